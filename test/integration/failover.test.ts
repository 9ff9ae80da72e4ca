// Failover of single machines on the real stack: unplanned from a chosen point, change of point,
// commit (forward replication disabled, replica and points kept), one failover per machine, and a
// planned failover that loses no acknowledged write.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { failoverBlobClient } from '../../activities/cloud-applier/recovered-disks';
import { replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
import { checkRecords, RecordWorkload, type RecordLayout } from '../../stack/demo/record-workload';
import type { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { recoveryDocs, type RecoveredMachine } from '../../shared/recovery-types';
import type { RecoveryPoint } from '../../shared/replication-types';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { protectWorkflowId, statusQuery } from '../../shared/contracts/protect-machine';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let bed: Testbed;
let ctx: ControlContext;
let vm1: TestMachine;
let vm2: TestMachine;

before(async () => {
  bed = await startTestbed();
  ctx = bed.ctx;
  [vm1, vm2] = await Promise.all([
    startTestMachine({ sizes: [16 * MiB] }),
    startTestMachine({ sizes: [16 * MiB] }),
  ]);
});

after(async () => {
  await vm1?.stop();
  await vm2?.stop();
  await bed?.stop();
});

/** The failed-over disks of a job, read back from osr-failover. */
async function failedOverImage(status: RecoveryStatus, diskId = 'disk0'): Promise<Buffer> {
  const disk = status.disks.find((d) => d.diskId === diskId);
  assert.ok(disk, `${diskId} is among the failed-over disks`);
  return failoverBlobClient(ctx.blobService, disk.blob).downloadToBuffer(0, disk.sizeBytes);
}

async function replicaBlobs(machine: string): Promise<string[]> {
  const names: string[] = [];
  for await (const b of ctx.blobService
    .getContainerClient(CONTAINERS.replica)
    .listBlobsFlat({ prefix: `${machine}/` }))
    names.push(b.name);
  return names;
}

async function protectedState(machine: string) {
  const client = await ctx.client();
  return (await client.workflow.getHandle(protectWorkflowId(machine)).query(statusQuery)).state;
}

test('unplanned failover from a chosen point, then another point, then commit', async () => {
  await machines.protect(ctx, {
    name: 'fo1',
    qmpSocket: vm1.daemon.qmpSocket,
    nbdSocket: vm1.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(ctx, 'fo1', (s) => s.state === 'protected');
  const disk = await vm1.disk();
  await disk.write(0, pseudoRandom(2 * MiB, 1));
  await disk.flush();
  const p1 = await pointById(ctx, 'fo1', (await machines.takePoint(ctx, 'fo1', { kind: 'crash' })).id);
  await disk.write(MiB, pseudoRandom(4 * MiB, 2));
  await disk.flush();
  const p2 = await pointById(ctx, 'fo1', (await machines.takePoint(ctx, 'fo1', { kind: 'crash' })).id);
  const image1 = await exportedImage(ctx, p1);
  const image2 = await exportedImage(ctx, p2);
  assert.ok(!image1.equals(image2), 'the two points differ');

  // Two failovers of one machine at once: exactly one proceeds, the other is told why.
  const [a, b] = await Promise.allSettled([
    failover.startFailover(ctx, 'fo1', { point: p1.id }),
    failover.startFailover(ctx, 'fo1', { point: p1.id }),
  ]);
  const won = [a, b].filter((r) => r.status === 'fulfilled');
  const lost = [a, b].filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(won.length, 1, 'one failover started');
  assert.match(String(lost[0]?.reason), /already running|same time/);
  const { ref, status } = (
    won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof failover.startFailover>>>
  ).value;
  assert.ok(status);
  assert.match(ref.workflowId, /^failover\/fo1\/\d{8}T\d{9}Z$/);
  assert.equal(status.state, 'failed-over');
  assert.equal(status.point?.id, p1.id);
  assert.deepEqual(
    status.disks.map((d) => d.blob),
    [`fo1-${ref.job}/disk0`],
  );
  assertSameImage(await failedOverImage(status), image1, 'failed over from p1');
  await assert.rejects(failover.startFailover(ctx, 'fo1'), /already running: failover\/fo1\//);
  assert.equal(await protectedState('fo1'), 'protected', 'replication goes on until commit');

  const changed = await failover.changeRecoveryPoint(ctx, 'fo1', p2.id);
  assert.equal(changed.point?.id, p2.id);
  assert.equal(changed.state, 'failed-over');
  assertSameImage(await failedOverImage(changed), image2, 'changed to p2');
  await assert.rejects(failover.changeRecoveryPoint(ctx, 'fo1', 'nope'), /has no recovery point "nope"/);

  // The failed-over disk is writable.
  const blob = failoverBlobClient(ctx.blobService, changed.disks[0]!.blob);
  await blob.uploadPages(Buffer.alloc(512, 0xab), 0, 512);

  const pointsBefore = (await ctx.vault.points('fo1')).map((p) => p.id);
  const committed = await failover.commitFailover(ctx, 'fo1');
  assert.equal(committed.state, 'committed');
  assert.equal(await protectedState('fo1'), 'disabled');
  assert.deepEqual(await replicaBlobs('fo1'), ['fo1/disk0'], 'the replica is kept');
  assert.deepEqual(
    (await ctx.vault.points('fo1')).map((p) => p.id),
    pointsBefore,
    'the points are kept',
  );
  assertSameImage(await exportedImage(ctx, p1), image1, 'p1 still readable after commit');
  const record = (await ctx.vault.read<RecoveredMachine>(recoveryDocs.recovered('fo1', ref.job)))?.value;
  assert.equal(record?.kind, 'failover');
  assert.equal(record?.point.id, p2.id);
  assert.deepEqual(record?.committed?.replicaBlobs, ['fo1/disk0']);
  assert.equal(record?.committed?.keptPoints, pointsBefore.length);
  await assert.rejects(failover.startFailover(ctx, 'fo1'), /committed.*reprotect/);
  await assert.rejects(failover.commitFailover(ctx, 'fo1'), /already committed/);

  const job = await failover.recoveryStatus(ctx, ref.job);
  assert.ok(!Array.isArray(job));
  assert.deepEqual(
    job.steps.map((s) => s.name),
    [
      'create disks',
      'record',
      'materialize',
      'boot check',
      'stop local copies',
      'delete disks',
      'create disks',
      'record',
      'materialize',
      'boot check',
      'commit',
    ],
  );
  const client = await ctx.client();
  await assertReplays(client.workflow.getHandle(ref.workflowId), 'failover-unplanned');
});

test('planned failover loses no acknowledged write; after commit the replica and points are kept', async () => {
  // A storage daemon has no guest to stop: its quiesce command tells the writer to stop.
  const stopMarker = path.join(vm2.dir, 'stop-writes');
  await machines.protect(ctx, {
    name: 'fo2',
    qmpSocket: vm2.daemon.qmpSocket,
    nbdSocket: vm2.daemon.nbdSocket,
    policy: 'manual',
    quiesce: { pre: `touch ${stopMarker}` },
  });
  await waitForStatus(ctx, 'fo2', (s) => s.state === 'protected');
  const layout: RecordLayout = { baseOffset: 4 * MiB, slots: 2048 };
  const workload = new RecordWorkload(await vm2.disk(), layout, 'planned');
  let wrote!: () => void;
  const writing = new Promise<void>((resolve) => (wrote = resolve));
  const writer = (async () => {
    while (!fs.existsSync(stopMarker) && workload.acknowledged < layout.slots - 1) {
      await workload.writeNext();
      if (workload.acknowledged === 20) wrote();
    }
  })();
  // The failover starts once the workload has had writes acknowledged.
  await Promise.race([writing, writer]);
  const ackAtStart = workload.acknowledged;
  assert.ok(ackAtStart > 0, 'the workload is writing');

  const { ref, status } = await failover.startFailover(ctx, 'fo2', { planned: true });
  await writer;
  assert.ok(status);
  assert.equal(status.state, 'failed-over');
  assert.deepEqual(
    status.steps.slice(0, 2).map((s) => [s.name, s.state]),
    [
      ['stop source writes', 'done'],
      ['final point', 'done'],
    ],
  );
  assert.match(status.steps[0]?.detail ?? '', /quiesce-hook/);
  const image = await failedOverImage(status);
  const check = await checkRecords(
    async (o, l) => image.subarray(o, o + l),
    layout,
    workload.acknowledged + 20,
  );
  assert.deepEqual(check.outOfOrder, []);
  assert.ok(
    check.prefix >= ackAtStart,
    `every write acknowledged before the failover is there: ${JSON.stringify(check)}`,
  );
  assert.equal(check.prefix, workload.acknowledged, 'writes stopped before the final point: nothing is lost');
  const finalPoint: RecoveryPoint = await pointById(ctx, 'fo2', status.point!.id);
  assert.equal(finalPoint.tag, 'planned-failover');
  assertSameImage(image, await vm2.readAll(), 'the failed-over disk is the source as it stopped');

  const committed = await failover.commitFailover(ctx, 'fo2');
  assert.equal(committed.state, 'committed');
  assert.equal(await protectedState('fo2'), 'disabled');
  assert.deepEqual(await replicaBlobs('fo2'), ['fo2/disk0']);
  assert.ok(
    (await ctx.vault.points('fo2')).some((p) => p.id === finalPoint.id),
    'the final point is kept',
  );
  assert.ok(await ctx.vault.machine('fo2'), 'the machine stays registered for reprotect');
  assert.equal(committed.committed?.lastPoint?.id, finalPoint.id);

  const jobs = await failover.recoveryStatus(ctx);
  assert.ok(Array.isArray(jobs) && jobs.some((j) => j.workflowId === ref.workflowId));
  const client = await ctx.client();
  await assertReplays(client.workflow.getHandle(ref.workflowId), 'failover-planned');
});

test('a failover that fails leaves nothing behind and frees the machine; a terminated one is taken over', async () => {
  // vm1's protection ended with fo1's commit: protect it again under another name.
  await machines.protect(ctx, {
    name: 'fo3',
    qmpSocket: vm1.daemon.qmpSocket,
    nbdSocket: vm1.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(ctx, 'fo3', (s) => s.state === 'protected');
  const gone = await pointById(ctx, 'fo3', (await machines.takePoint(ctx, 'fo3', { kind: 'crash' })).id);
  // As retention would: the point's image is deleted while the catalog still lists it.
  await replicaBlobClient(ctx.blobService, gone.disks[0]!.blob)
    .withSnapshot(gone.disks[0]!.snapshot)
    .delete();
  await assert.rejects(failover.startFailover(ctx, 'fo3', { point: gone.id }), /no longer exists/);
  assert.equal(await ctx.vault.read(recoveryDocs.failoverLock('fo3')), undefined, 'the lock is released');
  const leftovers: string[] = [];
  for await (const b of ctx.blobService
    .getContainerClient(CONTAINERS.failover)
    .listBlobsFlat({ prefix: 'fo3-' }))
    leftovers.push(b.name);
  assert.deepEqual(leftovers, []);

  await machines.takePoint(ctx, 'fo3', { kind: 'crash' }); // a latest point that is whole
  const first = await failover.startFailover(ctx, 'fo3', { wait: false });
  const client = await ctx.client();
  await client.workflow.getHandle(first.ref.workflowId).terminate('test: an operator killed it');
  const second = await failover.startFailover(ctx, 'fo3');
  assert.equal(second.status?.state, 'failed-over');
  assert.notEqual(second.ref.workflowId, first.ref.workflowId);
  assert.equal((await failover.commitFailover(ctx, 'fo3')).state, 'committed');
});
