// The failback round trip on the real stack: protect, write A, planned failover (committed,
// materialized), write B in the recovery site, reprotect (diff resync onto the original disk),
// write C in the recovery site (reverse delta cycles), fail back (final cycle, original disk up),
// write D on-prem, re-enable (resync against the kept replica). Bytes sent by reprotect and
// re-enable are compared with the bytes that differ; a kill -9 of the master target during
// reprotect loses nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
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
import { startApiServer } from '../../api/server';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { stopStorageDaemon } from '../../lib/qemu/storage-daemon';
import { checkRecords, RecordWorkload, type RecordLayout } from '../../stack/demo/record-workload';
import { reverseId, undoId } from '../../shared/failback-types';
import { createLogger } from '../../lib/config/logger';
import type { ControlContext } from '../../operations/context';
import * as failback from '../../operations/failback';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import * as plans from '../../operations/plans';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { failbackWorkflowId } from '../../shared/contracts/failback';
import { reprotectStatusQuery, reprotectWorkflowId } from '../../shared/contracts/reprotect';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const BLOCK = 64 * 1024;
const DISK = 64 * MiB;
let bed: Testbed;
let ctx: ControlContext;
const vms: TestMachine[] = [];
const conns: NbdClient[] = [];
/** Folders of the recovery-site copies (detached storage daemons, stopped at the end). */
const recoveredDirs: string[] = [];

before(async () => {
  bed = await startTestbed();
  ctx = bed.ctx;
  await bed.stack.startWorker('master-target');
});

after(async () => {
  for (const c of conns) await c.close().catch(() => undefined);
  for (const vm of vms) await vm.stop().catch(() => undefined);
  for (const dir of recoveredDirs) await stopStorageDaemon(dir).catch(() => undefined);
  await bed?.stop();
});

/** Bytes in 64 KiB blocks that differ between two images (what a checksum resync must send). */
function differingBytes(a: Buffer, b: Buffer): number {
  let n = 0;
  for (let off = 0; off < a.length; off += BLOCK)
    if (!a.subarray(off, off + BLOCK).equals(b.subarray(off, off + BLOCK)))
      n += Math.min(BLOCK, a.length - off);
  return n;
}

/** Incompressible data; seeds must differ after `| 1` (pseudoRandom's xorshift), or zstd finds repeats. */
async function write(nbd: NbdClient, offset: number, length: number, seed: number): Promise<void> {
  await nbd.write(offset, pseudoRandom(length, seed));
  await nbd.flush();
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 180_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what} ${String(last ?? '')}`);
}

/** A protected machine, failed over (planned), committed and materialized in the recovery site. */
async function failedOverMachine(name: string, writeA: (disk: NbdClient) => Promise<void>) {
  const vm = await startTestMachine({ sizes: [DISK] });
  vms.push(vm);
  const marker = path.join(vm.dir, 'writers-stopped');
  await machines.protect(ctx, {
    name,
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
    quiesce: { pre: `touch ${marker}`, post: `rm -f ${marker}` },
  });
  await failover.configureRecovery(ctx, name, { materialize: { format: 'qcow2' } });
  await waitForStatus(ctx, name, (s) => s.state === 'protected');
  const primary = await vm.disk();
  await writeA(primary);
  const { status } = await failover.startFailover(ctx, name, { planned: true });
  assert.equal(status?.state, 'failed-over');
  assert.ok(fs.existsSync(marker), 'the source writers were told to stop');
  const committed = await failover.commitFailover(ctx, name);
  assert.equal(committed.state, 'committed');
  const materialized = status?.materialized;
  assert.ok(materialized, 'the failed-over machine runs in the recovery site');
  recoveredDirs.push(materialized.dir);
  const recovery = await NbdClient.connect({ socket: materialized.nbdSocket, exportName: 'disk0' });
  conns.push(recovery);
  return { vm, primary, recovery, marker };
}

test('round trip: reprotect, fail back and re-enable send only what differs and lose no write', async () => {
  const t0 = Date.now();
  const { vm, primary, recovery, marker } = await failedOverMachine('fb1', async (disk) => {
    await write(disk, 0, 4 * MiB, 1); // A
  });
  const tFailedOver = Date.now();

  // B in the recovery site, then reprotect: a diff resync against the original disk.
  await write(recovery, 8 * MiB, MiB, 21);
  await write(recovery, 2 * MiB, 256 * 1024, 33); // overwrites part of A
  const diffB = differingBytes(await recovery.read(0, DISK), await vm.readAll());
  assert.equal(diffB, MiB + 256 * 1024);
  await assert.rejects(failback.startFailback(ctx, 'fb1'), /not being reprotected: reprotect it first/);
  await assert.rejects(failback.startReenable(ctx, 'fb1'), /not failed back yet/);
  // Two cycles per run: reverse replication continues-as-new during the test, state carried.
  const rp = await failback.startReprotect(ctx, 'fb1', { intervalSeconds: 2, maxCyclesPerRun: 2 });
  const tResynced = Date.now();
  assert.equal(rp.workflowId, reprotectWorkflowId('fb1'));
  assert.equal(rp.status?.state, 'protected');
  const resync = rp.status?.disks[0];
  assert.ok(resync);
  assert.equal(resync.resyncMode, 'resync', 'the original disk is there: a diff resync, not a full copy');
  assert.equal(resync.resyncRawBytes, diffB, 'the resync covers exactly the differing blocks');
  assert.ok(resync.resyncSentBytes >= diffB, `sent ${resync.resyncSentBytes} >= differing ${diffB}`);
  assert.ok(resync.resyncSentBytes < DISK / 16, `sent ${resync.resyncSentBytes} far below the disk size`);
  assertSameImage(await vm.readAll(), await recovery.read(0, DISK), 'original disk after the diff resync');
  await assert.rejects(failback.startReprotect(ctx, 'fb1'), /already being reprotected/);

  // C in the recovery site: reverse delta cycles carry it.
  await write(recovery, 20 * MiB, MiB, 45);
  const cyclesAfterC = (await failback.reprotectStatus(ctx, 'fb1')).cycles;
  await until('two more reverse cycles', async () =>
    (await failback.reprotectStatus(ctx, 'fb1')).cycles >= cyclesAfterC + 2 ? true : undefined,
  );
  assertSameImage(
    await vm.readAll(),
    await recovery.read(0, DISK),
    'original disk during reverse replication',
  );
  await write(recovery, 30 * MiB, 512 * 1024, 57); // more C, for the final cycle

  // Fail back: the recovery-site disk at the failback instant (no writer runs now).
  const atFailback = await recovery.read(0, DISK);
  const tFailbackStart = Date.now();
  const fb = await failback.startFailback(ctx, 'fb1');
  const tFailedBack = Date.now();
  assert.equal(fb.status?.state, 'done');
  assert.match(fb.workflowId, /^failback\/fb1\/\d{8}T\d{9}Z$/);
  assert.deepEqual(
    fb.status?.steps.map((s) => [s.name, s.state]),
    [
      ['stop recovery-site writes', 'done'],
      ['final cycle', 'done'],
      ['stop recovery-site copy', 'done'],
      ['bring up original', 'done'],
      ['record', 'done'],
    ],
  );
  assert.match(fb.status?.steps[3]?.detail ?? '', /thaw-hook/);
  assert.ok(!fs.existsSync(marker), 'the original machine was resumed (its thaw command ran)');
  const primaryAfter = await vm.readAll();
  assertSameImage(primaryAfter, atFailback, 'the original disk after failback is the recovery-site disk');
  for (const [off, len, seed] of [
    [8 * MiB, MiB, 21],
    [20 * MiB, MiB, 45],
    [30 * MiB, 512 * 1024, 57],
  ] as const)
    assert.ok(
      primaryAfter.subarray(off, off + len).equals(pseudoRandom(len, seed)),
      `write at ${off} is there`,
    );
  assert.ok(
    primaryAfter.subarray(0, 2 * MiB).equals(pseudoRandom(4 * MiB, 1).subarray(0, 2 * MiB)),
    'A is there',
  );
  await assert.rejects(failback.startFailback(ctx, 'fb1'), /already failed back/);
  const reprotectStats = (await failback.reprotectStatus(ctx, 'fb1')).disks[0];

  // D on-prem, then forward replication again: a resync against the kept replica.
  await write(primary, 40 * MiB, MiB, 69);
  const size = (await replicaBlobClient(ctx.blobService, 'fb1/disk0').getProperties()).contentLength ?? 0;
  const replicaBefore = await replicaBlobClient(ctx.blobService, 'fb1/disk0').downloadToBuffer(0, size);
  const primaryNow = await vm.readAll();
  const diffD = differingBytes(replicaBefore.subarray(0, DISK), primaryNow);
  const tReenableStart = Date.now();
  const re = await failback.startReenable(ctx, 'fb1');
  const tReenabled = Date.now();
  assert.equal(re.status?.state, 'done');
  const sent = re.status?.reenable;
  assert.ok(sent);
  assert.equal(sent.bytesChanged, diffD, 're-enable covers exactly the blocks that differ from the replica');
  assert.ok(sent.bytesSent >= diffD, `re-enable sent ${sent.bytesSent} >= differing ${diffD}`);
  assert.ok(sent.bytesSent < DISK / 8, `re-enable sent ${sent.bytesSent}, far below the disk size ${DISK}`);
  const status = await waitForStatus(ctx, 'fb1', (s) => s.state === 'protected');
  const next = await pointById(ctx, 'fb1', status.lastPoint!.id);
  assertSameImage(
    await exportedImage(ctx, next),
    await vm.readAll(),
    "the replica's next point is the primary disk",
  );
  const leftovers: string[] = [];
  for await (const b of ctx.blobService
    .getContainerClient(CONTAINERS.failover)
    .listBlobsFlat({ prefix: 'fb1-' }))
    leftovers.push(b.name);
  assert.deepEqual(leftovers, [], 're-enable removed the failover disks');
  // Failed over again later: the machine is free for it.
  await assert.rejects(failback.startReenable(ctx, 'fb1'), /already re-enabled/);

  const report = {
    diskBytes: DISK,
    reprotect: { differingBytes: diffB, ...resync },
    reverseTotal: reprotectStats,
    reenable: { differingBytes: diffD, ...sent },
    seconds: {
      protectAndFailover: (tFailedOver - t0) / 1000,
      reprotectResync: (tResynced - tFailedOver) / 1000,
      failback: (tFailedBack - tFailbackStart) / 1000,
      reenable: (tReenabled - tReenableStart) / 1000,
    },
  };
  process.stdout.write(`failback round trip: ${JSON.stringify(report)}\n`);

  const client = await ctx.client();
  // The last run (continued-as-new, final cycle) and the first one (prepare, diff resync).
  const last = client.workflow.getHandle(reprotectWorkflowId('fb1'));
  await assertReplays(last, 'reprotect-roundtrip');
  const firstRunId = (await last.describe()).raw.workflowExecutionInfo?.firstRunId;
  assert.ok(firstRunId, 'the reprotect continued as new');
  await assertReplays(
    client.workflow.getHandle(reprotectWorkflowId('fb1'), firstRunId),
    'reprotect-first-run',
  );
  await assertReplays(client.workflow.getHandle(fb.workflowId), 'failback-roundtrip');
  await assertReplays(client.workflow.getHandle(re.workflowId), 'reenable-roundtrip');
  assert.equal(failbackWorkflowId('fb1', 'x'), 'failback/fb1/x');
});

test('reprotect of a machine that was not failed over is refused with what to do', async () => {
  const vm = await startTestMachine({ sizes: [MiB] });
  vms.push(vm);
  await machines.protect(ctx, {
    name: 'fb0',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await assert.rejects(
    failback.startReprotect(ctx, 'fb0'),
    /was not failed over.*osr failover start fb0 --planned/,
  );
  await assert.rejects(failback.startReprotect(ctx, 'nope'), /no protected machine named nope/);

  // The CLI: exit 5 (conflict) with the same message, 4 for an unknown machine.
  const cli = path.resolve(__dirname, '..', '..', 'cli', 'main.js');
  const refused = spawnSync(process.execPath, [cli, 'reprotect', 'fb0', '--json'], {
    env: bed.stack.env,
    encoding: 'utf8',
  });
  assert.equal(refused.status, 5, refused.stderr);
  assert.match(refused.stderr, /was not failed over/);
  const missing = spawnSync(process.execPath, [cli, 'failback', 'nope'], {
    env: bed.stack.env,
    encoding: 'utf8',
  });
  assert.equal(missing.status, 4, missing.stderr);
  const planHelp = spawnSync(process.execPath, [cli, 'plan', 'reenable', '--help'], { encoding: 'utf8' });
  assert.match(planHelp.stdout, /groups in order/);

  // The API: 409 with the reason, 400 naming a bad field, and the new job kinds are known.
  const token = 'failback-test-token-0123456789';
  const api = await startApiServer({
    config: bed.stack.config,
    token,
    host: '127.0.0.1',
    port: 0,
    ctx,
    logger: createLogger('api-test', 'warn'),
  });
  try {
    const headers = { authorization: `Bearer ${token}` };
    const res = await fetch(`${api.url}/v1/machines/fb0/reprotect`, { method: 'POST', headers });
    assert.equal(res.status, 409);
    const body = (await res.json()) as { error?: { message?: string } };
    assert.match(body.error?.message ?? '', /was not failed over/);
    assert.equal((await fetch(`${api.url}/v1/jobs?kind=reprotect`, { headers })).status, 200);
    const bad = await fetch(`${api.url}/v1/machines/fb0/reprotect`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ interval: 'soon' }),
    });
    assert.equal(bad.status, 400);
  } finally {
    await api.close();
  }
});

test('a kill -9 of the master target during reprotect loses nothing', async () => {
  const { vm, recovery } = await failedOverMachine('fb2', async (disk) => {
    await write(disk, 0, MiB, 11);
  });
  // Much to send back: the apply takes a while, long enough to be interrupted.
  await write(recovery, 4 * MiB, 40 * MiB, 12);
  const started = await failback.startReprotect(ctx, 'fb2', { intervalSeconds: 3600, wait: false });
  const cache = ctx.blobService.getContainerClient(CONTAINERS.cache);
  // The master target has begun applying when its undo journal appears.
  const midApply = await until(
    'the master target applying',
    async () => {
      for await (const b of cache.listBlobsFlat({ prefix: `${undoId('fb2')}/disk0/` }))
        if (b.name.endsWith('.seg')) return true;
      const st = await failback.reprotectStatus(ctx, 'fb2').catch(() => undefined);
      return st?.state === 'protected' ? false : undefined;
    },
    300_000,
  );
  await bed.stack.killWorker('master-target');
  process.stdout.write(`master target killed ${midApply ? 'mid-apply' : 'after the apply'}\n`);
  await bed.stack.startWorker('master-target');
  const client = await ctx.client();
  const handle = client.workflow.getHandle(started.workflowId);
  const status = await until(
    'the resync applied',
    async () => {
      const s = await handle.query(reprotectStatusQuery);
      return s.state === 'protected' ? s : undefined;
    },
    300_000,
  );
  assert.equal(status.disks[0]?.resyncMode, 'resync');
  assertSameImage(
    await vm.readAll(),
    await recovery.read(0, DISK),
    'original disk after a master-target crash',
  );
  // No journal is left behind once the cycle is a point.
  const journal: string[] = [];
  for await (const b of cache.listBlobsFlat({ prefix: `${undoId('fb2')}/disk0/0` })) journal.push(b.name);
  assert.deepEqual(journal, []);
  const stopped = await failback.stopReprotect(ctx, 'fb2');
  assert.equal(stopped.state, 'stopped');
  assertSameImage(await vm.readAll(), await recovery.read(0, DISK), 'stopping keeps the last applied point');
});

test('when the original disk is gone, reprotect copies everything into a new disk that failback brings up', async () => {
  const { vm, recovery } = await failedOverMachine('fb3', async (disk) => {
    await write(disk, 0, 2 * MiB, 71);
  });
  await write(recovery, 6 * MiB, MiB, 73);
  await vm.stop(); // the primary site lost the machine
  const createdDir = path.join(bed.stack.stateDir, 'failback', 'fb3');
  recoveredDirs.push(createdDir);
  const rp = await failback.startReprotect(ctx, 'fb3', { intervalSeconds: 3600 });
  assert.equal(rp.status?.state, 'protected');
  assert.equal(rp.status?.target?.createdDir, createdDir);
  const first = rp.status?.disks[0];
  assert.equal(first?.resyncMode, 'full', 'no original disk: a full copy');
  assert.equal(first?.resyncRawBytes, 3 * MiB, 'the full copy sends the allocated data, not the whole disk');
  const target = rp.status?.target;
  assert.ok(target);
  const newDisk = await NbdClient.connect({ socket: target.nbdSocket, exportName: 'disk0' });
  conns.push(newDisk);
  assertSameImage(
    await newDisk.read(0, DISK),
    await recovery.read(0, DISK),
    'the new disk after the full copy',
  );

  await write(recovery, 12 * MiB, MiB, 75);
  const atFailback = await recovery.read(0, DISK);
  const fb = await failback.startFailback(ctx, 'fb3');
  assert.equal(fb.status?.state, 'done');
  assert.match(fb.status?.steps[3]?.detail ?? '', /original disks were gone/);
  assertSameImage(await newDisk.read(0, DISK), atFailback, 'the new disk after failback');

  const replica = replicaBlobClient(ctx.blobService, 'fb3/disk0');
  const size = (await replica.getProperties()).contentLength ?? 0;
  const diff = differingBytes((await replica.downloadToBuffer(0, size)).subarray(0, DISK), atFailback);
  const re = await failback.startReenable(ctx, 'fb3');
  assert.equal(re.status?.state, 'done');
  assert.equal(
    re.status?.reenable?.bytesChanged,
    diff,
    'forward replication resumes on the new disk by a resync',
  );
  assert.equal((await ctx.vault.machine('fb3'))?.source.qmpSocket, target.qmpSocket);
  const status = await waitForStatus(ctx, 'fb3', (s) => s.state === 'protected');
  const next = await pointById(ctx, 'fb3', status.lastPoint!.id);
  assertSameImage(await exportedImage(ctx, next), atFailback, "the replica's next point is the new disk");
  await machines.unprotect(ctx, 'fb3').catch(() => undefined);
});

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
