// Multi-VM consistency (design invariant 2) on two real VMs (qemu-system with a tiny Linux guest
// writing through virtio-blk) and a causal workload: machine B writes its record n only after
// machine A acknowledged its record n. In every group point, B's newest record must be no newer
// than A's, and (the pair being strictly alternating) no more than one behind. With the write
// barrier (QMP stop on both, freeze each, cont) that always holds; without it (members frozen one
// after the other) the same check finds B ahead of A in every cut: B's QMP monitor is reached
// through a gate that holds B's freeze until B has acknowledged a record A's freeze could not have
// seen, so the negative control does not depend on how fast the guests write.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { GroupPoint } from '../../shared/group-types';
import * as groups from '../../operations/groups';
import * as machines from '../../operations/machines';
import * as plans from '../../operations/plans';
import { groupWorkflowId } from '../../shared/group-types';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import { CausalWorkload, firstCutDone } from '../helpers/causal-workload';
import { waitForStatus } from '../helpers/protection';
import { assertReplays } from '../helpers/replay';
import { startTestMachine } from '../helpers/qemu-machine';
import { startQmpGate, type QmpGate } from '../helpers/qmp-gate';
import { startTestVm, type TestVm } from '../helpers/test-vm';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const CUTS = 5;
let causal: CausalWorkload;
let bed: Testbed;
let vmA: TestVm;
let vmB: TestVm;
let gateB: QmpGate;

before(async () => {
  bed = await startTestbed();
  [vmA, vmB] = await Promise.all([startTestVm({ disks: [8 * MiB] }), startTestVm({ disks: [8 * MiB] })]);
  gateB = await startQmpGate(vmB.qmpSocket, `${vmB.dir}/qmp-gate.sock`);
  await machines.protect(bed.ctx, { name: 'cg-a', qmpSocket: vmA.qmpSocket, policy: 'manual' });
  await machines.protect(bed.ctx, { name: 'cg-b', qmpSocket: gateB.path, policy: 'manual' });
  await waitForStatus(bed.ctx, 'cg-a', (s) => s.state === 'protected');
  await waitForStatus(bed.ctx, 'cg-b', (s) => s.state === 'protected');
  causal = new CausalWorkload(
    bed.ctx,
    { machine: 'cg-a', vm: vmA },
    { machine: 'cg-b', vm: vmB },
    { cuts: CUTS, warmupRecords: 20 },
  );
});

after(async () => {
  await bed?.stop();
  await gateB?.close();
  await vmA?.stop();
  await vmB?.stop();
});

test('with the write barrier, every group point is a consistent cut of a causal workload', async () => {
  const { ctx } = bed;
  const created = await groups.createGroup(ctx, {
    name: 'causal',
    machines: ['cg-a', 'cg-b'],
    intervalSeconds: 3600,
  });
  assert.equal(created.state, 'active');
  assert.equal((await machines.machineStatus(ctx, 'cg-a')).group, 'causal');
  // A new group cuts its first point at once.
  const before = (await firstCutDone(bed.ctx, 'causal')).stats.cuts;

  const { points, first, written } = await causal.cutsUnderLoad('causal');
  const seen: Array<{ a: number; b: number }> = [];
  for (const point of points) {
    assert.equal(point.consistent, true);
    assert.deepEqual(
      point.methods.map((m) => m.method),
      ['qmp-stop', 'qmp-stop'],
    );
    assert.ok(point.barrierMs > 0, 'the barrier was measured');
    const records = await causal.newestRecords(point);
    seen.push(records);
    // A writes n, then B writes n, then A writes n + 1: a consistent cut has B at A's record or
    // one behind it, never ahead and never further behind.
    assert.ok(
      records.b === records.a || records.b === records.a - 1,
      `group point ${point.id}: B's newest record ${records.b} is not A's ${records.a} or the one before`,
    );
    // Not vacuous: the cut lies inside this run's workload (the first 20 records came before it).
    assert.ok(
      records.a >= first + 20 && records.a <= written,
      `group point ${point.id}: A's newest record ${records.a} is within this run's ${first + 20}..${written}`,
    );
  }
  // The workload was writing across the cuts: each cut is no older than the one before, and they moved.
  for (let i = 1; i < seen.length; i++)
    assert.ok((seen[i]?.a ?? 0) >= (seen[i - 1]?.a ?? 0), `cuts in order: ${JSON.stringify(seen)}`);
  assert.ok(new Set(seen.map((r) => r.a)).size > 1, `records moved between cuts: ${JSON.stringify(seen)}`);

  const status = await groups.groupStatus(ctx, 'causal');
  assert.equal(status.stats.cuts, before + CUTS);
  assert.equal(status.stats.failed + status.stats.skipped, 0, JSON.stringify(status.alerts));
  assert.equal(status.barrier?.count, status.stats.cuts);
  assert.ok((status.barrier?.max ?? 0) >= (status.barrier?.mean ?? 0));
  console.log(
    `# write barrier over ${CUTS} cuts: mean ${status.barrier?.mean} ms, max ${status.barrier?.max} ms; newest records per cut ${JSON.stringify(seen)}`,
  );
  // The barrier always ends: both VMs run again.
  assert.equal(await vmA.status(), 'running');
  assert.equal(await vmB.status(), 'running');
  const listed = (await groups.groupPoints(ctx, 'causal')).map((p) => p.id);
  assert.deepEqual(
    listed.slice(-CUTS),
    points.map((p) => p.id),
  );

  // A drill of both machines from the newest group point recovers exactly its member points.
  await plans.createPlan(ctx, { name: 'causal-plan', groups: [{ machines: ['cg-a', 'cg-b'] }] });
  const drill = await plans.startPlan(ctx, 'causal-plan', 'test-failover', { point: 'group:causal' });
  assert.equal(drill.status?.state, 'ready', drill.status?.error);
  const newest = points.at(-1) as GroupPoint;
  assert.deepEqual(
    drill.status.groups[0]?.machines.map((m) => [m.machine, m.pointId]).sort(),
    newest.members.map((m) => [m.machine, m.pointId]).sort(),
  );
  await plans.startPlan(ctx, 'causal-plan', 'cleanup');
  await assert.rejects(
    plans.startPlan(ctx, 'causal-plan', 'test-failover', { point: 'group:causal/nope' }),
    /group causal has no group point nope/,
  );

  const client = await ctx.client();
  await groups.deleteGroup(ctx, 'causal');
  assert.equal((await machines.machineStatus(ctx, 'cg-a')).group, undefined, 'members leave the group');
  await assertReplays(client.workflow.getHandle(groupWorkflowId('causal')), 'consistencyGroup-causal');
  await assertReplays(client.workflow.getHandle(protectWorkflowId('cg-b')), 'protectMachine-group-member');
});

test('without the barrier, the same check finds B ahead of A: the barrier is what makes the cut', async () => {
  const { ctx } = bed;
  await groups.createGroup(ctx, {
    name: 'unsafe',
    machines: ['cg-a', 'cg-b'],
    intervalSeconds: 3600,
    barrier: false,
  });
  // B's freeze (its QMP transaction) waits until B acknowledged a record written after the freeze
  // was asked for, so after A's freeze, which comes first: B must then be ahead in every cut.
  gateB.hold(
    (execute) => execute === 'transaction',
    async () => causal.bAcknowledged(causal.ackedB + 1),
  );
  let points: GroupPoint[];
  try {
    ({ points } = await causal.cutsUnderLoad('unsafe'));
  } finally {
    gateB.hold(undefined);
  }
  assert.ok(gateB.held >= CUTS, `B's freezes went through the gate (${gateB.held} held)`);
  const violations: string[] = [];
  const seen: Array<{ a: number; b: number }> = [];
  for (const point of points) {
    assert.equal(point.consistent, false, 'a cut without the barrier is not marked consistent');
    const { a, b } = await causal.newestRecords(point);
    seen.push({ a, b });
    if (b > a) violations.push(`${point.id}: A ${a}, B ${b}`);
  }
  console.log(
    `# without the barrier: ${violations.length} of ${CUTS} cuts inconsistent (${violations.join('; ')})`,
  );
  assert.equal(
    violations.length,
    CUTS,
    `frozen one after the other, every cut has B ahead of A: ${JSON.stringify(seen)}`,
  );
  await groups.deleteGroup(ctx, 'unsafe');
});

test('a group is refused with the reason: one machine, unknown machine, a member without a way to hold writes', async () => {
  const { ctx } = bed;
  await assert.rejects(
    groups.createGroup(ctx, { name: 'solo', machines: ['cg-a'] }),
    /at least two machines/,
  );
  await assert.rejects(
    groups.createGroup(ctx, { name: 'ghost', machines: ['cg-a', 'nope'] }),
    /machine nope is not protected/,
  );
  // A storage daemon whose writers are outside QEMU, with no hooks: nothing can hold its writes.
  const daemon = await startTestMachine({ sizes: [MiB] });
  try {
    await machines.protect(ctx, {
      name: 'cg-d',
      qmpSocket: daemon.daemon.qmpSocket,
      nbdSocket: daemon.daemon.nbdSocket,
      policy: 'manual',
    });
    await waitForStatus(ctx, 'cg-d', (s) => s.state === 'protected');
    await assert.rejects(
      groups.createGroup(ctx, { name: 'mixed', machines: ['cg-a', 'cg-d'] }),
      /group mixed was not created: machine cg-d .*writes cannot be held.*--guest-agent or with both --pre and --post/,
    );
    assert.equal(
      (await machines.machineStatus(ctx, 'cg-a')).group,
      undefined,
      'nobody joined the refused group',
    );
    await machines.unprotect(ctx, 'cg-d');
  } finally {
    await daemon.stop();
  }
  await assert.rejects(
    groups.createGroup(ctx, { name: 'Bad Name', machines: ['cg-a', 'cg-b'] }),
    /group name "Bad Name" is not valid/,
  );
});
