// A planned failover's stop of an agent machine's writes (agent/tracking/stop.ts) over a fake
// device-mapper, and the connector's answer to an agent too old for it. The real stop, with a
// workload's own acknowledgements, runs in test/integration/agent-recovery.test.ts; what it cannot
// force cheaply: an agent restarted while stopped, a retried stop, and an old agent's refusal.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HoldDm } from '../../agent/tracking/hold';
import { WriteStops } from '../../agent/tracking/stop';
import type { WriteStopRecord } from '../../agent/tracking/store';
import type { AgentRequest } from '../../agent/protocol';
import { AgentChannel, registerChannel, unregisterChannel } from '../../lib/agents/channel';
import { agentSource, AgentTooOldError } from '../../lib/sources/agent-source';
import { fakeHoldDm } from '../helpers/fake-hold-dm';

const fakeDm = () => fakeHoldDm(9);

const top = (d: string) => `osr-${d}`;

test('a stop suspends every disk after its checkpoint, is kept in the state, and outlives the agent', async () => {
  const f = fakeDm();
  const state: { stop?: WriteStopRecord } = {};
  let saves = 0;
  const stops = new WriteStops(
    top,
    () => state,
    () => saves++,
    f.dm,
  );
  const r = await stops.stop(['vdb', 'vdc']);
  assert.deepEqual(r.disks, ['vdb', 'vdc']);
  assert.deepEqual(f.calls, [
    'checkpoint osr-vdb',
    'checkpoint osr-vdc',
    'suspend osr-vdb',
    'suspend osr-vdc',
  ]);
  assert.deepEqual(state.stop?.eras, { vdb: 9, vdc: 9 });
  assert.ok(saves >= 1, 'written to the state file');
  // A retried request answers the standing stop: nothing checkpointed or suspended again.
  assert.equal((await stops.stop(['vdb', 'vdc'])).stoppedAt, r.stoppedAt);
  assert.equal(f.calls.length, 4);
  // The agent restarts (a new process reads the same state): no limit ever lets the writes go,
  // and a point shipped before is not trusted to be the disk any more (a reboot may have written).
  state.stop = { ...(state.stop as WriteStopRecord), shipped: true };
  const restarted = new WriteStops(
    top,
    () => state,
    () => saves++,
    f.dm,
  );
  await restarted.reapply();
  assert.deepEqual([...f.suspended].sort(), ['osr-vdb', 'osr-vdc']);
  assert.equal(state.stop?.shipped, undefined);
  const resumed = await restarted.resume();
  assert.equal(resumed.resumed, true);
  assert.equal(f.suspended.size, 0);
  assert.equal(state.stop, undefined);
  assert.deepEqual(await restarted.resume(), { resumed: false, stoppedMs: 0 }, 'safe to repeat');
});

test('a stop that cannot suspend every disk lets the ones it suspended go and records nothing', async () => {
  const f = fakeDm();
  const state: { stop?: WriteStopRecord } = {};
  const dm: HoldDm = {
    ...f.dm,
    async suspend(device) {
      if (device === 'osr-vdc') throw new Error('dmsetup suspend osr-vdc failed');
      return f.dm.suspend(device);
    },
  };
  const stops = new WriteStops(
    top,
    () => state,
    () => undefined,
    dm,
  );
  await assert.rejects(stops.stop(['vdb', 'vdc']), /osr-vdc/);
  assert.equal(f.suspended.size, 0);
  assert.equal(state.stop, undefined);
});

test('a resume waits for a freeze using the stop', async () => {
  const f = fakeDm();
  const state: { stop?: WriteStopRecord } = {};
  const stops = new WriteStops(
    top,
    () => state,
    () => undefined,
    f.dm,
  );
  await stops.stop(['vdb']);
  let finish: () => void = () => undefined;
  const seen: boolean[] = [];
  const freezing = stops.during(
    () =>
      new Promise<void>((resolve) => {
        finish = () => {
          seen.push(f.suspended.has('osr-vdb'));
          resolve();
        };
      }),
  );
  const resuming = stops.resume();
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(f.suspended.has('osr-vdb'), 'still stopped while the snapshot is being made');
  finish();
  await freezing;
  assert.equal((await resuming).resumed, true);
  assert.deepEqual(seen, [true]);
});

test('an agent older than stop-writes refuses the planned failover with the fix, nothing stopped', async () => {
  const asked: AgentRequest['op'][] = [];
  const channel: AgentChannel = new AgentChannel(
    'ag-0123456789ab',
    { machineId: 'm', hostname: 'old', os: 'Debian', kernel: '6.1', agentVersion: '0.1.0-old', disks: [] },
    (line) => {
      const { id, request } = JSON.parse(line) as { id: number; request: AgentRequest };
      asked.push(request.op);
      // What an agent of an earlier release answers a request it does not know.
      setImmediate(() =>
        channel.onReply(id, undefined, { name: 'Error', message: `unknown request ${request.op}` }),
      );
    },
  );
  registerChannel(channel);
  try {
    const source = await agentSource.connect(
      {
        name: 'old',
        site: 'primary',
        source: { type: 'agent', agentId: 'ag-0123456789ab', disks: ['vdb'] },
        policy: 'p',
        createdAt: new Date(0).toISOString(),
      } as Parameters<typeof agentSource.connect>[0],
      {},
    );
    await assert.rejects(source.stopWrites(), (err: Error) => {
      assert.ok(err instanceof AgentTooOldError);
      assert.match(err.message, /nothing was stopped/);
      assert.match(err.message, /`osr agent upgrade ag-0123456789ab`/);
      return true;
    });
    assert.deepEqual(asked, ['stop-writes']);
  } finally {
    unregisterChannel(channel, 'test over');
  }
});
