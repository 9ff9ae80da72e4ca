// The Mobility agent's write hold for group cuts (agent/tracking/hold.ts) over a fake device-mapper
// that records what is suspended: the real one runs only inside the agent test guest
// (test/integration/agent-group.test.ts). What the integration test cannot force: the limit
// letting writes go by itself (and the release saying so), a hold cancelled by an unhold that
// arrived before it started, and a release waiting for a freeze that uses the hold.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WriteHolds } from '../../agent/tracking/hold';
import { fakeHoldDm } from '../helpers/fake-hold-dm';

const fakeDm = () => fakeHoldDm(7);

const top = (d: string) => `osr-${d}`;

test('a hold suspends every disk after its checkpoint; the release resumes them and says they stayed held', async () => {
  const f = fakeDm();
  const holds = new WriteHolds(top, { dm: f.dm });
  const held = await holds.hold(holds.ticket(), ['vdb', 'vdc']);
  assert.deepEqual(held.disks, ['vdb', 'vdc']);
  assert.deepEqual([...f.suspended].sort(), ['osr-vdb', 'osr-vdc']);
  assert.deepEqual(holds.standing()?.eras, { vdb: 7, vdc: 7 });
  // A retried hold request answers the standing hold; nothing is suspended twice.
  assert.equal((await holds.hold(holds.ticket(), ['vdb', 'vdc'])).heldAt, held.heldAt);
  assert.equal(f.calls.filter((c) => c.startsWith('suspend')).length, 2);
  const outcome = await holds.release();
  assert.equal(outcome.held, true);
  assert.equal(outcome.expired, false);
  assert.equal(f.suspended.size, 0);
  // A retried release gets the same answer.
  assert.deepEqual(await holds.release(), outcome);
});

test('writes held past the limit are let go by the agent itself, and the release says so', async () => {
  const f = fakeDm();
  const holds = new WriteHolds(top, { dm: f.dm, limitMs: 50 });
  await holds.hold(holds.ticket(), ['vdb']);
  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (f.suspended.size === 0) {
        clearInterval(check);
        resolve();
      }
    }, 5);
  });
  assert.equal(holds.standing(), undefined, 'an expired hold is not used by a freeze');
  const outcome = await holds.release();
  assert.equal(outcome.held, false);
  assert.equal(outcome.expired, true);
  assert.ok(outcome.heldMs >= 50, `held ${outcome.heldMs} ms`);
});

test('an unhold that arrives before its hold started cancels it: nothing is held', async () => {
  const f = fakeDm();
  const holds = new WriteHolds(top, { dm: f.dm });
  const ticket = holds.ticket(); // the hold arrived, waiting behind another request
  const released = await holds.release(); // the process server gave up and sent unhold
  assert.equal(released.held, false);
  await assert.rejects(holds.hold(ticket, ['vdb']), /cancelled/);
  assert.equal(f.suspended.size, 0);
  // A later hold works again.
  await holds.hold(holds.ticket(), ['vdb']);
  assert.equal(f.suspended.size, 1);
  await holds.release();
});

test('a release waits for a freeze using the hold before it resumes', async () => {
  const f = fakeDm();
  const holds = new WriteHolds(top, { dm: f.dm });
  await holds.hold(holds.ticket(), ['vdb']);
  const hold = holds.standing();
  assert.ok(hold);
  let finish: () => void = () => undefined;
  const seenSuspended: boolean[] = [];
  const freezing = holds.during(
    hold,
    () =>
      new Promise<void>((resolve) => {
        finish = () => {
          seenSuspended.push(f.suspended.has('osr-vdb'));
          resolve();
        };
      }),
  );
  const releasing = holds.release();
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(f.suspended.has('osr-vdb'), 'still held while the snapshot is being made');
  finish();
  await freezing;
  assert.equal((await releasing).held, true);
  assert.deepEqual(seenSuspended, [true]);
  assert.equal(f.suspended.size, 0);
});
