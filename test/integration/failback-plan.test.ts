// Failback on the real stack, continued (failback.test.ts has the round trip): a recovery plan
// through reprotect, failback and re-enable; the master target's undo journal; failback with
// writers running in the recovery site (invariant 7).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { writeCycleManifest } from '../../lib/segments/cycle-layout';
import { loadEncryptionKey } from '../../activities/common/encryption-key';
import {
  applyReverseCycle,
  commitReversePoint,
  readMasterTargetPoint,
  rollbackIncomplete,
} from '../../activities/master-target/apply-reverse';
import { BlockPipeline } from '../../lib/segments/block-pipeline';
import { segmentBlobName } from '../../lib/segments/segment-format';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { checkRecords, RecordWorkload, type RecordLayout } from '../../stack/demo/record-workload';
import { reverseId } from '../../shared/failback-types';
import * as failback from '../../operations/failback';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import * as plans from '../../operations/plans';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { assertSameImage, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import {
  MiB,
  DISK,
  bed,
  ctx,
  vms,
  conns,
  recoveredDirs,
  write,
  until,
  failedOverMachine,
  useFailbackStack,
} from '../helpers/failback-fixture';

useFailbackStack();

test('a recovery plan walks reprotect, failback and re-enable group by group', async () => {
  const a = await failedOverMachine('fbp-a', async (disk) => write(disk, 0, MiB, 81));
  const b = await failedOverMachine('fbp-b', async (disk) => write(disk, 0, MiB, 83));
  const actionLog = path.join(a.vm.dir, 'actions.log');
  await plans.createPlan(ctx, {
    name: 'fbp',
    groups: [
      { machines: ['fbp-a'], post: [{ kind: 'script', command: `echo "post $OSR_GROUP" >> ${actionLog}` }] },
      { machines: ['fbp-b'], pre: [{ kind: 'manual', instruction: 'Check the database is up on-prem' }] },
    ],
  });
  await write(a.recovery, 3 * MiB, MiB, 85);
  await write(b.recovery, 5 * MiB, MiB, 87);
  // Checked before anything starts: a machine that cannot reprotect stops the whole plan.
  await assert.rejects(
    failback.planStage(ctx, 'fbp', 'failback'),
    /cannot failback; nothing was started:\n {2}fbp-a: .*reprotect it first/,
  );
  const rp = await failback.planStage(ctx, 'fbp', 'reprotect', { intervalSeconds: 3600 });
  assert.match(rp.workflowId, /^plan\/fbp\/reprotect\/\d{8}T\d{9}Z$/);
  assert.deepEqual(
    rp.status?.groups.map((g) => [g.name, g.state, g.machines.map((m) => [m.machine, m.state, m.detail])]),
    [
      ['g1', 'done', [['fbp-a', 'done', 'reverse replication protected']]],
      ['g2', 'done', [['fbp-b', 'done', 'reverse replication protected']]],
    ],
  );
  assert.equal(
    (await failback.reprotectStatus(ctx, 'fbp-a')).state,
    'protected',
    'reverse replication runs on',
  );
  await write(a.recovery, 9 * MiB, MiB, 89);
  // The recovery-site copies at the failback instant (failback stops them).
  const [aAt, bAt] = [await a.recovery.read(0, DISK), await b.recovery.read(0, DISK)];
  // The failback stage brings machines up: it runs the plan's actions, the manual one approved.
  const started = await failback.planStage(ctx, 'fbp', 'failback', { wait: false });
  await until('the manual action waits', async () =>
    (await failback.planStageStatus(ctx, started.workflowId)).groups[1]?.actions?.[0]?.state === 'waiting'
      ? true
      : undefined,
  );
  assert.deepEqual(fs.readFileSync(actionLog, 'utf8').trim().split('\n'), ['post g1']);
  await plans.approve(ctx, started.workflowId, 'g2-pre-1', 'alice');
  const fb = {
    workflowId: started.workflowId,
    status: await until('plan failback done', async () => {
      const st = await failback.planStageStatus(ctx, started.workflowId);
      return st.state === 'running' ? undefined : st;
    }),
  };
  assert.equal(fb.status?.state, 'done', fb.status?.error);
  assert.deepEqual(
    fb.status.groups.map((g) => g.actions?.map((x) => [x.id, x.state, x.approvedBy ?? ''])),
    [[['g1-post-1', 'done', '']], [['g2-pre-1', 'done', 'alice']]],
  );
  assert.equal(rp.status?.groups[0]?.actions, undefined, 'reprotect runs no actions');
  assert.deepEqual(
    fb.status?.groups.flatMap((g) => g.machines.map((m) => m.state)),
    ['done', 'done'],
  );
  assertSameImage(await a.vm.readAll(), aAt, 'fbp-a after the plan failback');
  assertSameImage(await b.vm.readAll(), bAt, 'fbp-b after the plan failback');
  const re = await failback.planStage(ctx, 'fbp', 'reenable');
  assert.equal(re.status?.state, 'done');
  assert.deepEqual(
    re.status?.groups.flatMap((g) => g.machines.map((m) => m.state)),
    ['done', 'done'],
  );
  const client = await ctx.client();
  for (const [job, name] of [
    [rp.workflowId, 'failbackPlan-reprotect'],
    [fb.workflowId, 'failbackPlan-failback'],
    [re.workflowId, 'failbackPlan-reenable'],
  ] as const)
    await assertReplays(client.workflow.getHandle(job), name);
  await assert.rejects(failback.planStage(ctx, 'fbp', 'failback'), /fbp-a: .*reprotect it first/);
});

test("the master target's undo journal: an interrupted apply rolls back to its last point, and a bad segment is never written", async () => {
  const vm = await startTestMachine({ sizes: [16 * MiB] });
  vms.push(vm);
  const primary = await vm.disk();
  await write(primary, 0, 12 * MiB, 91);
  const original = await vm.readAll();
  const pipeline = new BlockPipeline({
    threads: 1,
    maxBytesInFlight: 64 * MiB,
    key: await loadEncryptionKey(bed.stack.config),
  });
  try {
    const deps = { blobService: ctx.blobService, pipeline };
    const cache = ctx.blobService.getContainerClient(CONTAINERS.cache);
    const disk = {
      diskId: 'disk0',
      node: 'disk0',
      sizeBytes: 16 * MiB,
      exportName: 'disk0',
      nbdSocket: vm.daemon.nbdSocket,
      existed: true,
    };
    // A reverse cycle of eight 1 MiB segments, as a recovery-site process server uploads it
    // (more than the apply's window of segments in flight, so an abort stops it midway).
    const upload = async (cycle: number, segments: Buffer[], tamper = false) => {
      for (const [index, data] of segments.entries()) {
        const encoded = await pipeline.encode({
          machine: reverseId('fbu'),
          diskId: 'disk0',
          cycle,
          index,
          extents: [{ offset: index * MiB, length: data.length }],
          data: Buffer.from(data),
        });
        const at = encoded.segment.length - 40;
        if (tamper) encoded.segment.writeUInt8(encoded.segment.readUInt8(at) ^ 0xff, at);
        await cache
          .getBlockBlobClient(segmentBlobName(reverseId('fbu'), 'disk0', cycle, index))
          .uploadData(encoded.segment);
      }
      await writeCycleManifest(ctx.blobService, {
        machine: reverseId('fbu'),
        diskId: 'disk0',
        cycle,
        segments: segments.length,
        sizeBytes: 16 * MiB,
      });
    };
    const segments = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => pseudoRandom(MiB, 101 + 2 * i));
    const expected = Buffer.concat([...segments, original.subarray(8 * MiB)]);
    await upload(1, segments);

    // Interrupted once the first segment is written (as a crash would, but deterministic).
    const abort = new AbortController();
    let resumeAt = 0;
    await assert.rejects(
      applyReverseCycle(deps, {
        machine: 'fbu',
        disk,
        cycle: 1,
        signal: abort.signal,
        onProgress: (n) => {
          resumeAt = n;
          abort.abort(new Error('interrupted'));
        },
      }),
      /interrupted|aborted/,
    );
    assert.ok(resumeAt >= 1);
    assert.ok(!(await vm.readAll()).equals(original), 'the interrupted apply changed the disk');
    assert.equal(await readMasterTargetPoint(ctx.blobService, 'fbu'), undefined);
    const rolled = await rollbackIncomplete(deps, { machine: 'fbu', disk });
    assert.deepEqual(rolled.rolledBack, [1]);
    assertSameImage(await vm.readAll(), original, 'rolled back to the point before the cycle');

    // A retry that resumes at its heartbeated index starts over, since its journal was rolled back.
    await applyReverseCycle(deps, { machine: 'fbu', disk, cycle: 1, startIndex: resumeAt });
    assertSameImage(await vm.readAll(), expected, 'the cycle applied in full');
    await commitReversePoint(deps, { machine: 'fbu', diskIds: ['disk0'], cycle: 1 });
    assert.equal((await readMasterTargetPoint(ctx.blobService, 'fbu'))?.cycle, 1);
    assert.deepEqual((await rollbackIncomplete(deps, { machine: 'fbu', disk })).rolledBack, []);

    // A segment that fails verification is never written.
    await upload(2, [pseudoRandom(MiB, 201)], true);
    await assert.rejects(
      applyReverseCycle(deps, { machine: 'fbu', disk, cycle: 2 }),
      (err: unknown) => (err as { type?: string }).type === 'SegmentCorrupt',
    );
    assertSameImage(await vm.readAll(), expected, 'nothing of the corrupt cycle was written');
  } finally {
    await pipeline.destroy();
  }
});

test('failback with writers running in the recovery site loses no acknowledged write (invariant 7), two disks', async () => {
  const vm = await startTestMachine({ sizes: [64 * MiB, 16 * MiB] });
  vms.push(vm);
  const marker = path.join(vm.dir, 'writers-stopped');
  await machines.protect(ctx, {
    name: 'fbw',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
    quiesce: { pre: `touch ${marker}`, post: `rm -f ${marker}` },
  });
  await failover.configureRecovery(ctx, 'fbw', { materialize: { format: 'qcow2' } });
  await waitForStatus(ctx, 'fbw', (s) => s.state === 'protected');
  await write(await vm.disk(0), 0, 2 * MiB, 301);
  await write(await vm.disk(1), MiB, MiB, 303);
  const { status } = await failover.startFailover(ctx, 'fbw', { planned: true });
  await failover.commitFailover(ctx, 'fbw');
  const materialized = status?.materialized;
  assert.ok(materialized);
  recoveredDirs.push(materialized.dir);
  const [r0, r1] = await Promise.all(
    ['disk0', 'disk1'].map((exportName) => NbdClient.connect({ socket: materialized.nbdSocket, exportName })),
  );
  conns.push(r0!, r1!);
  await write(r1!, 8 * MiB, MiB, 305); // B on the second disk

  // In the recovery site a writer appends records until the failback's stop command tells it to.
  const stopMarker = path.join(materialized.dir, 'stop-writes');
  const rp = await failback.startReprotect(ctx, 'fbw', {
    intervalSeconds: 1,
    quiesce: { pre: `touch ${stopMarker}` },
  });
  assert.deepEqual(rp.status?.disks.map((d) => [d.diskId, d.resyncMode, d.resyncRawBytes]).sort(), [
    ['disk0', 'resync', 0],
    ['disk1', 'resync', MiB],
  ]);
  const layout: RecordLayout = { baseOffset: 16 * MiB, slots: 12288 };
  const workload = new RecordWorkload(r0!, layout, 'recovery');
  // Paced (a few hundred records a second) so that the slots outlast the test: it is the
  // failback's stop command that ends the writer.
  const writer = (async () => {
    while (!fs.existsSync(stopMarker) && workload.acknowledged < layout.slots - 1) {
      await workload.writeNext();
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  await until('the writer and a reverse cycle under way', async () =>
    workload.acknowledged > 20 && (await failback.reprotectStatus(ctx, 'fbw')).cycles >= 2 ? true : undefined,
  );
  const fb = await failback.startFailback(ctx, 'fbw');
  await writer;
  assert.equal(fb.status?.state, 'done');
  assert.match(fb.status?.steps[0]?.detail ?? '', /quiesce-hook/);
  assert.ok(workload.acknowledged < layout.slots - 1, 'the writer ran until the failback stopped it');
  const primary0 = await vm.readAll(0);
  const check = await checkRecords(
    async (o, l) => primary0.subarray(o, o + l),
    layout,
    workload.acknowledged + 20,
  );
  assert.deepEqual(check.outOfOrder, []);
  assert.equal(
    check.prefix,
    workload.acknowledged,
    'every write acknowledged in the recovery site is on the original disk',
  );
  assert.ok(
    (await vm.readAll(1)).subarray(8 * MiB, 9 * MiB).equals(pseudoRandom(MiB, 305)),
    'B on the second disk',
  );
  process.stdout.write(
    `invariant 7: ${workload.acknowledged} records acknowledged in the recovery site, all on the original disk\n`,
  );
});
