// Recovery points when the primary host's clock is wrong, on the real stack: the process server
// (which reads the primary's clock at each freeze) runs under libfaketime two minutes behind, then
// on the right clock again. Points keep their cycle order, `latest` is the newest point, a drill
// and a failover to `latest` hold the newest data, and the clock-skew alert comes and goes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { listServers } from '../../lib/observability/server-health';
import { failoverBlobClient } from '../../activities/cloud-applier/recovered-disks';
import type { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { protectWorkflowId, type MachineStatus } from '../../shared/contracts/protect-machine';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import type { RecoveryPoint } from '../../shared/replication-types';
import { pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import type { TestStack } from '../helpers/test-stack';
import { protectManual, startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const M = 'skew1';
const SKEW_S = 120;
const FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
/** Where each point's marker goes: 4 KiB that only that point's write put there. */
const MARKER_AT = 2 * MiB;
const MARKER = 4096;

let bed: Testbed;
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;

before(async () => {
  assert.ok(fs.existsSync(FAKETIME_LIB), `${FAKETIME_LIB} missing: apt-get install faketime`);
  bed = await startTestbed();
  ({ stack, ctx } = bed);
  vm = await startTestMachine({ sizes: [8 * MiB] });
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(1 * MiB, 5));
  await disk.flush();
  await protectManual(ctx, M, vm);
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
});

/** The process server again, on the right clock or `skewS` seconds off it. */
async function restartProcessServer(skewS?: number): Promise<void> {
  await stack.killWorker('process-server');
  await stack.startWorker(
    'process-server',
    skewS === undefined
      ? {}
      : { LD_PRELOAD: FAKETIME_LIB, FAKETIME: `${skewS}s`, FAKETIME_DONT_FAKE_MONOTONIC: '1' },
  );
}

/** Writes marker `seed` and cuts a point holding it; the test host's (true) time of the cut too. */
async function markedPoint(seed: number): Promise<{ point: RecoveryPoint; cutAt: number }> {
  const disk = await vm.disk();
  await disk.write(MARKER_AT, pseudoRandom(MARKER, seed));
  await disk.flush();
  const cutAt = Date.now();
  const brief = await machines.takePoint(ctx, M, { kind: 'crash' });
  return { point: await pointById(ctx, M, brief.id), cutAt };
}

const skewAlert = (s: MachineStatus) => s.alerts.find((a) => a.kind === 'clock-skew');

async function markerOf(status: RecoveryStatus | undefined): Promise<Buffer> {
  assert.ok(status?.disks[0], 'the job made a disk');
  return failoverBlobClient(ctx.blobService, status.disks[0].blob).downloadToBuffer(MARKER_AT, MARKER);
}

test('a primary clock behind, then set right: latest is the newest point, in cycle order, alerted', async () => {
  const a = await markedPoint(101);
  assert.equal(skewAlert(await machines.machineStatus(ctx, M)), undefined, 'no alert on the right clock');
  assert.equal(a.point.sourceInstant, a.point.instant, 'clocks agree: the primary reading is the instant');

  await restartProcessServer(-SKEW_S);
  const b = await markedPoint(102);
  const c = await markedPoint(103);
  for (const { point, cutAt } of [b, c]) {
    // The primary's reading, kept as its source clock, is two minutes behind the test host's.
    const behind = cutAt - Date.parse(point.sourceInstant ?? '');
    assert.ok(Math.abs(behind - SKEW_S * 1000) < 15_000, `${point.id}: source clock ${behind} ms behind`);
    // The instant is on Temporal's clock: after the point cut before it.
    assert.ok(Date.parse(point.instant) >= cutAt, `${point.id}: instant ${point.instant} not before the cut`);
    assert.ok(point.instant > a.point.instant, `${point.id} is labelled after ${a.point.id}`);
  }
  const skewed = await machines.machineStatus(ctx, M);
  const alert = skewAlert(skewed);
  assert.ok(alert, `a clock-skew alert while the clock is behind: ${JSON.stringify(skewed.alerts)}`);
  assert.match(alert.message, new RegExp(`read ${c.point.sourceInstant ?? '?'}`));
  assert.match(alert.message, /Temporal's clock read/);
  assert.match(alert.message, /behind/);
  assert.match(alert.message, /NTP/);
  assert.equal((await machines.resolvePoint(ctx, M, 'latest')).id, c.point.id, 'latest while skewed');
  // Its heartbeats carry the clock two minutes behind; aged by the storage service's clock, the
  // process server is live, not stale (the stale limit is 60 s).
  const skewedServers = (await listServers(ctx.vault, ctx.config)).filter(
    (s) => s.role === 'process-server' && Date.now() - Date.parse(s.at) > 90_000,
  );
  assert.equal(skewedServers.length, 1, 'the skewed process server has a heartbeat on record');
  assert.equal(skewedServers[0]?.stale, false, `live despite its clock: ${JSON.stringify(skewedServers[0])}`);

  // A drill to latest holds the newest data (c's marker), not the point labelled last by the clock.
  const drill = await failover.startTestFailover(ctx, M, { point: 'latest' });
  assert.equal(drill.status?.point?.id, c.point.id);
  assert.ok(
    (await markerOf(drill.status)).equals(pseudoRandom(MARKER, 103)),
    'the drill has the newest data',
  );
  await failover.cleanupTestFailover(ctx, drill.ref.job);

  await restartProcessServer();
  const d = await markedPoint(104);
  assert.equal(d.point.sourceInstant, d.point.instant, 'clocks agree again');
  const fixed = await waitForStatus(ctx, M, (s) => s.lastPoint?.id === d.point.id);
  assert.equal(skewAlert(fixed), undefined, `the alert cleared: ${JSON.stringify(fixed.alerts)}`);

  const listed = await machines.listPoints(ctx, M);
  assert.deepEqual(
    listed.slice(-4).map((p) => p.id),
    [a, b, c, d].map((x) => x.point.id),
    'listed in the order they were cut',
  );
  const cycles = listed.map((p) => p.cycle);
  assert.deepEqual(
    cycles,
    [...cycles].sort((x, y) => x - y),
    'cycles ascend',
  );
  const instants = listed.map((p) => Date.parse(p.instant));
  assert.deepEqual(
    instants,
    [...instants].sort((x, y) => x - y),
    'instants never go backwards',
  );
  assert.equal((await machines.resolvePoint(ctx, M, 'latest')).id, d.point.id, 'latest after the fix');
  // "At or before" the moment before d: c, the newest point then (b's and c's source clocks say earlier).
  assert.equal((await machines.resolvePoint(ctx, M, new Date(d.cutAt).toISOString())).id, c.point.id);

  // A failover to latest recovers d's data.
  const fo = await failover.startFailover(ctx, M, {});
  assert.equal(fo.status?.state, 'failed-over');
  assert.equal(fo.status?.point?.id, d.point.id);
  assert.ok(
    (await markerOf(fo.status)).equals(pseudoRandom(MARKER, 104)),
    'the failover has the newest data',
  );

  await assertReplays(
    (await ctx.client()).workflow.getHandle(protectWorkflowId(M)),
    'protectMachine-point-order',
  );
});
