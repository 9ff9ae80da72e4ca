// The failback round trip on the real stack: protect, write A, planned failover (committed,
// materialized), write B in the recovery site, reprotect (diff resync onto the original disk),
// write C in the recovery site (reverse delta cycles), fail back (final cycle, original disk up),
// write D on-prem, re-enable (resync against the kept replica). Bytes sent by reprotect and
// re-enable are compared with the bytes that differ; a kill -9 of the master target during
// reprotect loses nothing. Plans, the undo journal and writers during failback:
// failback-plan.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
import { startApiServer } from '../../api/server';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { undoId } from '../../shared/failback-types';
import type { QemuSource } from '../../shared/replication-types';
import { createLogger } from '../../lib/config/logger';
import * as failback from '../../operations/failback';
import * as machines from '../../operations/machines';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { failbackWorkflowId } from '../../shared/contracts/failback';
import { reprotectStatusQuery, reprotectWorkflowId } from '../../shared/contracts/reprotect';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
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
  differingBytes,
  write,
  until,
  failedOverMachine,
  useFailbackStack,
} from '../helpers/failback-fixture';

useFailbackStack();

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
  // The differing data is random (incompressible): sent = it plus framing, within 1 % (one extra
  // 64 KiB block would be 5 %).
  assert.ok(
    resync.resyncSentBytes <= diffB + diffB / 100,
    `sent ${resync.resyncSentBytes}, within 1 % of the ${diffB} differing bytes`,
  );
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
      ['remove recovery-site leftovers', 'done'],
    ],
  );
  assert.match(fb.status?.steps[3]?.detail ?? '', /thaw-hook/);
  assert.match(fb.status?.steps[5]?.detail ?? '', /^removed .*machines\/fb1\.reverse/);
  assert.ok(
    !fs.existsSync(path.join(bed.stack.stateDir, 'machines', 'fb1.reverse')),
    'its work folder is gone',
  );
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
  assert.ok(
    sent.bytesSent <= diffD + diffD / 100,
    `re-enable sent ${sent.bytesSent}, within 1 % of the ${diffD} differing bytes`,
  );
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
  assert.equal(midApply, true, 'the undo journal appeared before the resync was done');
  // Seen on the original disk itself while no master target runs: the kill landed before the
  // apply finished (some of the 40 MiB still differs from the recovery-site disk).
  const differingAtKill = differingBytes(await vm.readAll(), await recovery.read(0, DISK));
  const toApply = 40 * MiB;
  assert.ok(
    differingAtKill > 0,
    `the kill landed mid-apply: ${differingAtKill} of ${toApply} bytes still to apply`,
  );
  process.stdout.write(
    `master target killed mid-apply: ${toApply - differingAtKill} of ${toApply} bytes applied\n`,
  );
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
  assert.equal(
    ((await ctx.vault.machine('fb3'))?.source as QemuSource | undefined)?.qmpSocket,
    target.qmpSocket,
  );
  const status = await waitForStatus(ctx, 'fb3', (s) => s.state === 'protected');
  const next = await pointById(ctx, 'fb3', status.lastPoint!.id);
  assertSameImage(await exportedImage(ctx, next), atFailback, "the replica's next point is the new disk");
  await machines.unprotect(ctx, 'fb3').catch(() => undefined);
});
