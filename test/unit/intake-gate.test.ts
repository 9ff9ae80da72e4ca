// The process server's spool bound (activities/process-server/intake-gate.ts): room is taken in
// order, never more than the capacity, and a full gate pauses intake until uploads give room back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IntakeGate } from '../../lib/segments/intake-gate';

const MiB = 1024 * 1024;

test('the gate never holds more than its capacity, serves waiters in order, and reports pause and resume', async () => {
  const events: string[] = [];
  const gate = new IntakeGate(8 * MiB, {
    onPause: (s) => events.push(`pause held=${s.heldBytes / MiB} waiting=${s.waiting}`),
    onResume: (s) => events.push(`resume held=${s.heldBytes / MiB}`),
  });
  await gate.acquire(4 * MiB);
  await gate.acquire(4 * MiB);
  const order: number[] = [];
  const third = gate.acquire(4 * MiB).then(() => order.push(3));
  const fourth = gate.acquire(2 * MiB).then(() => order.push(4));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [], 'a full gate makes new intake wait');
  assert.equal(gate.stats().waiting, 2);
  assert.deepEqual(events, ['pause held=8 waiting=1']);
  gate.release(4 * MiB);
  await third;
  assert.deepEqual(order, [3], 'first come, first served; the next waits while it does not fit');
  assert.equal(gate.stats().heldBytes, 8 * MiB);
  gate.release(2 * MiB);
  await fourth;
  assert.deepEqual(order, [3, 4]);
  assert.equal(gate.stats().peakHeldBytes, 8 * MiB, 'never above the capacity');
  assert.deepEqual(events, ['pause held=8 waiting=1', 'resume held=8']);
  gate.release(2 * MiB);
  gate.release(4 * MiB);
  gate.release(2 * MiB);
  assert.equal(gate.stats().heldBytes, 0);
  assert.equal(gate.stats().pauses, 1);
});

test('room is given back however the work ends', async () => {
  const gate = new IntakeGate(4 * MiB);
  await assert.rejects(
    gate.with(4 * MiB, async () => {
      throw new Error('upload failed for good');
    }),
    /upload failed for good/,
  );
  assert.equal(gate.stats().heldBytes, 0);
  assert.equal(await gate.with(4 * MiB, async () => 'sent'), 'sent');
  assert.equal(gate.stats().heldBytes, 0);
});

test('a job larger than the gate waits for an empty gate rather than for ever', async () => {
  const gate = new IntakeGate(4 * MiB);
  await gate.acquire(1 * MiB);
  let big = false;
  const wait = gate.acquire(6 * MiB).then(() => (big = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(big, false);
  gate.release(1 * MiB);
  await wait;
  assert.equal(gate.stats().heldBytes, 4 * MiB);
  gate.release(6 * MiB);
  assert.equal(gate.stats().heldBytes, 0);
});
