// The heartbeat helper every long activity uses: it hands the work the previous attempt's cursor,
// heartbeats a beaten cursor at once and again on its timer; and the wait on another workflow's
// state sleeps with the activity context, so cancelling the activity ends the wait.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { withHeartbeat, type Heartbeat } from '../../activities/common/with-heartbeat';
import { awaitWorkflowState } from '../../activities/common/await-workflow';

test('withHeartbeat resumes from the previous cursor and heartbeats the latest one on its timer', async () => {
  const env = new MockActivityEnvironment({ heartbeatDetails: { nextIndex: 7 } });
  const beats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => beats.push(d));
  const seen = await env.run(() =>
    withHeartbeat(
      async (hb: Heartbeat<{ nextIndex: number }>) => {
        const resumedAt = hb.previous?.nextIndex;
        await new Promise((r) => setTimeout(r, 35)); // ticks send the initial cursor
        hb.beat({ nextIndex: 9 });
        await new Promise((r) => setTimeout(r, 35)); // ticks send the beaten one
        return { resumedAt, cursor: hb.cursor };
      },
      { initial: (prev) => prev ?? { nextIndex: 0 }, everyMs: 10 },
    ),
  );
  assert.deepEqual(seen, { resumedAt: 7, cursor: { nextIndex: 9 } });
  assert.deepEqual(beats[0], { nextIndex: 7 });
  const at = beats.findIndex((b) => (b as { nextIndex: number }).nextIndex === 9);
  assert.ok(at > 0, 'the beaten cursor is heartbeated');
  assert.ok(beats.slice(at).length >= 2, 'and heartbeated again on the timer');
  assert.ok(beats.slice(at).every((b) => (b as { nextIndex: number }).nextIndex === 9));
  const after = beats.length;
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(beats.length, after, 'no heartbeat after the work ended');
});

test('withHeartbeat without a cursor heartbeats without details', async () => {
  const env = new MockActivityEnvironment();
  const beats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => beats.push(d));
  const result = await env.run(() =>
    withHeartbeat(() => new Promise((r) => setTimeout(() => r('done'), 35)), { everyMs: 10 }),
  );
  assert.equal(result, 'done');
  assert.ok(beats.length >= 2);
  assert.ok(beats.every((b) => b === undefined));
});

test('awaitWorkflowState polls until the state is there, and a cancelled activity stops waiting', async () => {
  let calls = 0;
  const env = new MockActivityEnvironment();
  const state = await env.run(() =>
    awaitWorkflowState(async () => (++calls >= 3 ? 'failed-over' : undefined), 5),
  );
  assert.equal(state, 'failed-over');
  assert.equal(calls, 3);

  const cancelled = new MockActivityEnvironment();
  const waiting = cancelled.run(() => awaitWorkflowState(async () => undefined, 10_000));
  setTimeout(() => cancelled.cancel(), 20);
  await assert.rejects(waiting, (err: unknown) => err instanceof CancelledFailure);
});
