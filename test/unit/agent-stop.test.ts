// A planned failover's stop of an agent machine's writes (agent/tracking/stop.ts) over a fake
// device-mapper, and the connector's answer to an agent too old for it. The real stop, with a
// workload's own acknowledgements, runs in test/integration/agent-recovery.test.ts; what it cannot
// force cheaply: an agent restarted while stopped, a retried stop, an old agent's refusal, and a
// stopped log that may lag (another boot, a disk let go, a resume begun).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { blockExtents, ERA_BLOCK_BYTES } from '../../agent/tracking/stack';
import { WriteStops, type StopDm } from '../../agent/tracking/stop';
import type { WriteStopRecord } from '../../agent/tracking/store';
import type { AgentRequest } from '../../agent/protocol';
import { AgentChannel, registerChannel, unregisterChannel } from '../../lib/agents/channel';
import { agentSource, AgentTooOldError } from '../../lib/sources/agent-source';
import { fakeHoldDm } from '../helpers/fake-hold-dm';

const fakeDm = () => fakeHoldDm(9);

const top = (d: string) => `osr-${d}`;

/** Stops over `dm`, with the tracker's state they keep the stop in (saved nowhere). */
function stopsOver(dm: StopDm): { stops: WriteStops; state: { stop?: WriteStopRecord } } {
  const state: { stop?: WriteStopRecord } = {};
  return {
    stops: new WriteStops(
      top,
      () => state,
      () => undefined,
      dm,
    ),
    state,
  };
}

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
  const dm: StopDm = {
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
  const { stops } = stopsOver(f.dm);
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

test('a point of stopped disks sends only the blocks written since the last shipped point, from the log the stop committed', async () => {
  const f = fakeDm();
  const { stops } = stopsOver(f.dm);
  // Shipped up to era 5; block 40 written since, block 41 between the stop's checkpoint (era 9)
  // and its suspend; block 3 shipped before; block 7 is another disk's.
  f.written.push(['osr-vdb', 3, 4], ['osr-vdb', 40, 7], ['osr-vdb', 41, 9], ['osr-vdc', 7, 8]);
  assert.equal(await stops.writtenSince('vdb', 5), undefined, 'not stopped: a metadata snapshot');
  await stops.stop(['vdb', 'vdc']);
  const blocks = await stops.writtenSince('vdb', 5);
  assert.deepEqual(blocks, [
    [40, 41],
    [41, 42],
  ]);
  const size = 16 << 20;
  const extents = blockExtents(blocks ?? [], size);
  assert.deepEqual(extents, [
    [40 * ERA_BLOCK_BYTES, ERA_BLOCK_BYTES],
    [41 * ERA_BLOCK_BYTES, ERA_BLOCK_BYTES],
  ]);
  assert.equal(
    extents.reduce((n, [, len]) => n + len, 0),
    2 * ERA_BLOCK_BYTES,
    'two blocks of a 256-block disk, not all of it',
  );
  // Read while suspended, with no message to the suspended era (the fake fails one).
  assert.deepEqual(f.calls.slice(-1), ['read osr-vdb since 5']);
  // A disk's last block is cut at the disk's end.
  assert.deepEqual(blockExtents([[255, 257]], 255 * ERA_BLOCK_BYTES + 4096), [[255 * ERA_BLOCK_BYTES, 4096]]);
});

test('a stopped log that may miss a write sends the whole disk: another boot, a disk let go, a resume begun', async () => {
  const f = fakeDm();
  const { stops, state } = stopsOver(f.dm);
  f.written.push(['osr-vdb', 40, 7]);
  await stops.stop(['vdb']);
  const stop = state.stop as WriteStopRecord;
  // A reboot rebuilt the stack: a write may have reached the disk before the agent ran.
  state.stop = { ...stop, bootId: 'an-earlier-boot' };
  assert.equal(await stops.writtenSince('vdb', 5), undefined);
  state.stop = { ...stop, bootId: undefined }; // a stop made by an agent before this one
  assert.equal(await stops.writtenSince('vdb', 5), undefined);
  state.stop = stop;
  assert.equal(await stops.writtenSince('vdc', 5), undefined, 'not a stopped disk');
  f.suspended.delete('osr-vdb'); // resumed by hand: the live era may be writing its log
  assert.equal(await stops.writtenSince('vdb', 5), undefined);
  f.suspended.add('osr-vdb');
  // A read under way holds the resume; a resume under way makes a read send the whole disk.
  let finish: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (finish = resolve));
  const read = f.dm.committedWrittenSince.bind(f.dm);
  f.dm.committedWrittenSince = async (...args) => {
    await gate;
    return read(...args);
  };
  const reading = stops.writtenSince('vdb', 5);
  const resuming = stops.resume();
  assert.equal(await stops.writtenSince('vdb', 5), undefined, 'a resume has begun');
  await new Promise((r) => setImmediate(r));
  assert.ok(f.suspended.has('osr-vdb'), 'suspended while its log is read');
  finish();
  assert.deepEqual(await reading, [[40, 41]]);
  assert.equal((await resuming).resumed, true);
  assert.equal(f.suspended.size, 0);
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
