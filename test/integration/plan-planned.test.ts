// Planned failover of a whole recovery plan: each machine's writes are stopped (here its quiesce
// command tells the writer to stop: a storage daemon has no guest), a final point is cut, and the
// machines fail over group by group with no acknowledged write lost.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { failoverBlobClient } from '../../activities/cloud-applier/recovered-disks';
import { checkRecords, RecordWorkload, type RecordLayout } from '../../stack/demo/record-workload';
import * as machines from '../../operations/machines';
import * as plans from '../../operations/plans';
import { recoveryDocs, type RecoveredMachine } from '../../shared/recovery-types';
import { assertSameImage, pointById, waitForStatus } from '../helpers/protection';
import { startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const NAMES = ['pp-db', 'pp-web'];
// Each writer keeps a steady 40 records/s (a workload's change rate, not a wait on anything), so
// that its 60 MiB of slots last 6 minutes through the first group's failover on any machine.
const RECORDS_PER_SECOND = 40;
const layout: RecordLayout = { baseOffset: 1 * MiB, slots: 15360 };
let bed: Testbed;
const vms = new Map<string, TestMachine>();
const stopMarker = (name: string) => `${vms.get(name)?.dir}/stop-writes`;

before(async () => {
  bed = await startTestbed();
  for (const name of NAMES) {
    const vm = await startTestMachine({ sizes: [64 * MiB] });
    vms.set(name, vm);
    await machines.protect(bed.ctx, {
      name,
      qmpSocket: vm.daemon.qmpSocket,
      nbdSocket: vm.daemon.nbdSocket,
      policy: 'manual',
      quiesce: { pre: `touch ${vm.dir}/stop-writes` },
    });
  }
  for (const name of NAMES) await waitForStatus(bed.ctx, name, (s) => s.state === 'protected');
});

after(async () => {
  await bed?.stop();
  for (const vm of vms.values()) await vm.stop();
});

test('planned failover of a plan: writes stop, final points, groups in order, nothing acknowledged is lost', async () => {
  const { ctx } = bed;
  await plans.createPlan(ctx, {
    name: 'planned',
    groups: [{ machines: ['pp-db'] }, { machines: ['pp-web'] }],
  });
  // Each machine's writer runs until its quiesce command says stop.
  const workloads = new Map<string, RecordWorkload>();
  const writers: Promise<void>[] = [];
  const writing: Promise<void>[] = [];
  for (const name of NAMES) {
    const vm = vms.get(name) as TestMachine;
    const workload = new RecordWorkload(await vm.disk(), layout, name);
    workloads.set(name, workload);
    let wrote!: () => void;
    writing.push(new Promise<void>((resolve) => (wrote = resolve)));
    writers.push(
      (async () => {
        const start = Date.now();
        while (!fs.existsSync(stopMarker(name)) && workload.acknowledged < layout.slots - 1) {
          await workload.writeNext();
          if (workload.acknowledged === 20) wrote();
          const ahead = start + (workload.acknowledged * 1000) / RECORDS_PER_SECOND - Date.now();
          if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
        }
      })(),
    );
  }
  // The failover starts once every writer has had writes acknowledged (and is still writing).
  await Promise.all(writing);

  const { ref, status } = await plans.startPlan(ctx, 'planned', 'failover', { planned: true });
  await Promise.all(writers);
  assert.equal(status?.state, 'failed-over', status?.error);
  for (const name of NAMES) {
    // The writers stopped because the quiesce command told them to, not because they ran out.
    assert.ok(fs.existsSync(stopMarker(name)), `${name}'s quiesce command ran`);
    assert.ok(
      (workloads.get(name) as RecordWorkload).acknowledged < layout.slots - 1,
      `${name} was still writing`,
    );
  }
  const order = JSON.stringify(status.groups.map((g) => [g.name, g.state, g.startedAt, g.endedAt]));
  assert.equal(status.groups.length, 2, order);
  // Both groups carry real times (a missing one must not pass the order check).
  const times = status.groups.map((g, i) => {
    const started = Date.parse(g.startedAt ?? '');
    const ended = Date.parse(g.endedAt ?? '');
    assert.ok(
      Number.isFinite(started) && Number.isFinite(ended),
      `group ${i} has startedAt and endedAt: ${order}`,
    );
    assert.ok(started <= ended, `group ${i} ended after it started: ${order}`);
    return { started, ended };
  });
  assert.ok(
    (times[0] as { ended: number }).ended <= (times[1] as { started: number }).started,
    `the second group started after the first ended: ${order}`,
  );

  for (const name of NAMES) {
    const workload = workloads.get(name) as RecordWorkload;
    console.log(`# ${name}: ${workload.acknowledged} records acknowledged`);
    assert.ok(workload.acknowledged > 0, `${name}'s workload wrote before the failover`);
    const recovered = (await ctx.vault.read<RecoveredMachine>(recoveryDocs.recovered(name, ref.job)))?.value;
    assert.ok(recovered, `${name} was recovered`);
    const point = await pointById(ctx, name, recovered.point.id);
    assert.equal(point.tag, 'planned-failover', `${name} failed over from its final point`);
    const disk = recovered.disks[0];
    assert.ok(disk);
    const image = await failoverBlobClient(ctx.blobService, disk.blob).downloadToBuffer(0, disk.sizeBytes);
    const check = await checkRecords(
      async (o, l) => image.subarray(o, o + l),
      layout,
      workload.acknowledged + 20,
    );
    assert.deepEqual(check.outOfOrder, [], name);
    assert.equal(
      check.prefix,
      workload.acknowledged,
      `${name}: every acknowledged write is in the failed-over disk`,
    );
    assertSameImage(image, await (vms.get(name) as TestMachine).readAll(), `${name}'s failed-over disk`);
  }
  const committed = await plans.commitPlan(ctx, 'planned');
  assert.equal(committed.state, 'committed', committed.error);
});
