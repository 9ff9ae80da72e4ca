// The heartbeat helper every long activity uses: it hands the work the previous attempt's cursor,
// heartbeats a beaten cursor at once and again on its timer; and the wait on another workflow's
// state sleeps with the activity context, so cancelling the activity ends the wait.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { withHeartbeat, type Heartbeat } from '../../activities/common/with-heartbeat';
import { awaitWorkflowState } from '../../activities/common/await-workflow';

/** Resolves once `ok(beats)` holds, checked at every heartbeat: the test waits on what it counts. */
function beatsReach(env: MockActivityEnvironment, beats: unknown[], ok: (b: unknown[]) => boolean) {
  return new Promise<void>((resolve) => {
    if (ok(beats)) return resolve();
    env.on('heartbeat', () => ok(beats) && resolve());
  });
}
const cursorIs = (n: number) => (b: unknown) => (b as { nextIndex: number } | undefined)?.nextIndex === n;

test('withHeartbeat resumes from the previous cursor and heartbeats the latest one on its timer', async () => {
  const env = new MockActivityEnvironment({ heartbeatDetails: { nextIndex: 7 } });
  const beats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => beats.push(d));
  const seen = await env.run(() =>
    withHeartbeat(
      async (hb: Heartbeat<{ nextIndex: number }>) => {
        const resumedAt = hb.previous?.nextIndex;
        await beatsReach(env, beats, (b) => b.length >= 2); // ticks send the initial cursor
        hb.beat({ nextIndex: 9 });
        await beatsReach(env, beats, (b) => b.filter(cursorIs(9)).length >= 3); // at once, then ticks
        return { resumedAt, cursor: hb.cursor };
      },
      { initial: (prev) => prev ?? { nextIndex: 0 }, everyMs: 10 },
    ),
  );
  assert.deepEqual(seen, { resumedAt: 7, cursor: { nextIndex: 9 } });
  assert.deepEqual(beats[0], { nextIndex: 7 });
  assert.ok(beats.slice(0, 2).every(cursorIs(7)), 'the resumed cursor is heartbeated before any beat');
  const at = beats.findIndex(cursorIs(9));
  assert.ok(beats.slice(at).every(cursorIs(9)), 'after a beat only the beaten cursor is sent');
  const after = beats.length;
  // Absence can only be shown by waiting: ten ticks' worth with no heartbeat.
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(beats.length, after, 'no heartbeat after the work ended');
});

test('withHeartbeat without a cursor heartbeats without details', async () => {
  const env = new MockActivityEnvironment();
  const beats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => beats.push(d));
  const result = await env.run(() =>
    withHeartbeat(
      async () => {
        await beatsReach(env, beats, (b) => b.length >= 2);
        return 'done';
      },
      { everyMs: 10 },
    ),
  );
  assert.equal(result, 'done');
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
