// Replication end to end on the real parts: qemu-storage-daemon (the machine), the Temporal dev
// server, Azurite, and the process-server, cloud-applier and control workers as processes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
import { QmpClient } from '../../lib/qemu/qmp-client';
import { checkRecords, RecordWorkload, type RecordLayout } from '../../stack/demo/record-workload';
import type { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { cyclePlanBlobName } from '../../lib/segments/cache-layout';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import type { FaultProxy } from '../helpers/fault-proxy';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, textLike, type TestMachine } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import { startProxiedTestbed, type ProxiedTestbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let bed: ProxiedTestbed;
let ctx: ControlContext;
let vm: TestMachine;
let proxy: FaultProxy;

before(async () => {
  bed = await startProxiedTestbed();
  proxy = bed.proxy;
  ctx = bed.ctx;
  vm = await startTestMachine({ sizes: [64 * MiB] });
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(8 * MiB, 1));
  await disk.write(32 * MiB, textLike(4 * MiB));
  await disk.flush();
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
});

test('initial sync: the first point equals the source, and holes cross no wire', async () => {
  await machines.protect(ctx, {
    name: 'vm1',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  const status = await waitForStatus(ctx, 'vm1', (s) => s.state === 'protected');
  assert.ok(status.lastPoint, 'a first recovery point exists');
  const point = await pointById(ctx, 'vm1', status.lastPoint.id);
  assertSameImage(await exportedImage(ctx, point), await vm.readAll(), 'first point');
  // 12 MiB of the 64 MiB disk hold data: only those were read and sent.
  assert.equal(status.stats.bytesChanged, 12 * MiB);
  assert.ok(
    status.stats.bytesSent < 12 * MiB,
    `sent ${status.stats.bytesSent} bytes, less than the 12 MiB of data (text compresses)`,
  );
});

test('write order: every point holds exactly a prefix of the acknowledged records', async () => {
  const disk = await vm.disk();
  const layout: RecordLayout = { baseOffset: 48 * MiB, slots: 4096 };
  const workload = new RecordWorkload(disk, layout, 'test');
  // The writer runs ahead of each point by at most `limit` records, so the area never fills up.
  let running = true;
  let limit = 0;
  let wake: (() => void) | undefined;
  let progress: { at: number; resolve: () => void } | undefined;
  const writer = (async () => {
    while (running && workload.acknowledged < layout.slots - 1) {
      if (workload.acknowledged >= limit) {
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      await workload.writeNext();
      if (progress && workload.acknowledged >= progress.at) progress.resolve();
    }
  })();
  const checks = [];
  for (let i = 0; i < 3; i++) {
    // Each point is asked for after 20 more acknowledged records, with the writer still going.
    const target = workload.acknowledged + 20;
    limit = workload.acknowledged + 600;
    const moved = new Promise<void>((resolve) => (progress = { at: target, resolve }));
    wake?.();
    await moved;
    const ackBefore = workload.acknowledged;
    const brief = await machines.takePoint(ctx, 'vm1', { kind: 'crash', tag: `order-${i}` });
    const ackAfter = workload.acknowledged;
    const image = await exportedImage(ctx, await pointById(ctx, 'vm1', brief.id));
    const check = await checkRecords(async (o, l) => image.subarray(o, o + l), layout, ackAfter + 20);
    checks.push({ ackBefore, ackAfter, ...check });
  }
  running = false;
  wake?.();
  await writer;
  for (const c of checks) {
    assert.deepEqual(c.outOfOrder, [], `no record newer than a missing one: ${JSON.stringify(c)}`);
    assert.ok(
      c.prefix >= c.ackBefore,
      `every record acknowledged before the point was requested is in it: ${JSON.stringify(c)}`,
    );
    assert.ok(
      c.prefix <= c.ackAfter,
      `no record acknowledged after the point was published is in it: ${JSON.stringify(c)}`,
    );
  }
  assert.ok(checks[2]!.prefix > checks[0]!.prefix, 'the workload moved on between points');

  // With the workload stopped, the next point is the disk byte for byte.
  const last = await machines.takePoint(ctx, 'vm1', { kind: 'crash' });
  assertSameImage(
    await exportedImage(ctx, await pointById(ctx, 'vm1', last.id)),
    await vm.readAll(),
    'point after the workload',
  );
});

test('a segment corrupted on its way to the cache is never applied: it is sent again, and an alert says so', async () => {
  const disk = await vm.disk();
  await disk.write(20 * MiB, pseudoRandom(2 * MiB, 7));
  await disk.flush();
  proxy.rules.push({
    match: (m, url) => m === 'PUT' && /\/osr-cache\/vm1\/disk0\/\d+\/\d+\.seg/.test(url),
    action: 'corrupt',
    times: 1,
  });
  const sentBefore = proxy.requests.length;
  const brief = await machines.takePoint(ctx, 'vm1', { kind: 'crash' });
  assert.equal(proxy.hits.length, 1, 'the proxy corrupted one segment upload');
  const status = await machines.machineStatus(ctx, 'vm1');
  assert.ok(
    status.alerts.some((a) => a.kind === 'segment-corrupt' && /failed verification/.test(a.message)),
    `a segment-corrupt alert: ${JSON.stringify(status.alerts)}`,
  );
  // The corrupted segment crossed the proxy again, after the corrupt copy (counted at the proxy).
  const corrupted = (proxy.hits[0] as string).replace(/^corrupt /, '');
  const puts = proxy.requests.slice(sentBefore).filter((r) => r === corrupted);
  assert.ok(puts.length >= 2, `the corrupted segment was sent again: ${corrupted} seen ${puts.length} times`);
  const source = await vm.readAll();
  const point = await pointById(ctx, 'vm1', brief.id);
  assertSameImage(await exportedImage(ctx, point), source, 'point after a corrupt segment');
  // The replica itself (the page blob the points are snapshots of) holds the source, not the flipped byte.
  const replicaDisk = point.disks[0];
  assert.ok(replicaDisk);
  assertSameImage(
    await replicaBlobClient(ctx.blobService, replicaDisk.blob).downloadToBuffer(0, source.length),
    source,
    'replica after a corrupt segment',
  );
});

test('lost tracking triggers a checksum resync that sends only the differing blocks', async () => {
  const before = await machines.machineStatus(ctx, 'vm1');
  // The machine's dirty bitmaps are gone, as after a restart of a daemon serving a raw disk.
  const qmp = await QmpClient.connect(vm.daemon.qmpSocket);
  const nodes = await qmp.execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name: string }> }>>(
    'query-named-block-nodes',
    { flat: true },
  );
  for (const b of nodes.find((n) => n['node-name'] === 'disk0')?.['dirty-bitmaps'] ?? []) {
    await qmp.execute('block-dirty-bitmap-remove', { node: 'disk0', name: b.name });
  }
  await qmp.close();
  const disk = await vm.disk();
  for (const off of [1 * MiB, 10 * MiB + 4096, 40 * MiB]) await disk.write(off, pseudoRandom(4096, off));
  await disk.flush();

  const brief = await machines.takePoint(ctx, 'vm1', { kind: 'crash' });
  const after = await machines.machineStatus(ctx, 'vm1');
  assert.equal(
    after.stats.bytesChanged - before.stats.bytesChanged,
    3 * 64 * 1024,
    'three 64 KiB blocks differ, only they were sent',
  );
  assertSameImage(
    await exportedImage(ctx, await pointById(ctx, 'vm1', brief.id)),
    await vm.readAll(),
    'point after resync',
  );
  assert.deepEqual(
    after.disks.map((d) => d.nextMode),
    ['delta'],
    'tracking is back for the next cycle',
  );

  // An operator's resync with nothing changed sends nothing.
  await machines.resync(ctx, 'vm1');
  await waitForStatus(ctx, 'vm1', (s) => s.stats.cycles > after.stats.cycles && s.state === 'protected');
  const idle = await machines.machineStatus(ctx, 'vm1');
  assert.equal(
    idle.stats.bytesChanged,
    after.stats.bytesChanged,
    'a resync of identical disks sends no block',
  );
});

test('pause, resume and conflicting operations are answered with the reason', async () => {
  await machines.pause(ctx, 'vm1', 'maintenance');
  await assert.rejects(machines.pause(ctx, 'vm1'), /cannot pause machine vm1 while it is paused/);
  await assert.rejects(machines.takePoint(ctx, 'vm1', { kind: 'crash' }), /while it is paused/);
  const resumed = await machines.resume(ctx, 'vm1');
  assert.equal(resumed.state, 'protected');
  await assert.rejects(
    machines.protect(ctx, { name: 'vm1', qmpSocket: vm.daemon.qmpSocket, policy: 'manual' }),
    /already protected/,
  );
  await assert.rejects(
    machines.resolvePoint(ctx, 'vm1', 'no-such-point'),
    /has no recovery point "no-such-point"/,
  );
});

test('the protect workflow replays deterministically', async () => {
  const client = await ctx.client();
  await assertReplays(client.workflow.getHandle(protectWorkflowId('vm1')), 'protectMachine-vm1');
});

test('the encryption key appears in no workflow history, log or vault document', async () => {
  const keyText = fs.readFileSync(path.join(bed.stack.stateDir, 'keys', 'osr.key'), 'utf8').trim();
  const key = Buffer.from(keyText, 'base64');
  assert.equal(key.length, 32);
  const needles = [keyText, key.toString('hex'), key.toString('base64url')];
  const client = await ctx.client();
  const haystacks: Array<[string, string]> = [
    [
      'history of protect/vm1',
      historyToJSON(await client.workflow.getHandle(protectWorkflowId('vm1')).fetchHistory()),
    ],
  ];
  const logs = path.join(bed.stack.stateDir, 'logs');
  for (const f of fs.readdirSync(logs))
    haystacks.push([`log ${f}`, fs.readFileSync(path.join(logs, f), 'latin1')]);
  const vault = ctx.blobService.getContainerClient(CONTAINERS.vault);
  for await (const b of vault.listBlobsFlat()) {
    haystacks.push([
      `vault ${b.name}`,
      (await vault.getBlobClient(b.name).downloadToBuffer()).toString('latin1'),
    ]);
  }
  assert.ok(haystacks.length > 5);
  for (const [where, text] of haystacks) {
    for (const needle of needles) assert.ok(!text.includes(needle), `the key is in ${where}`);
  }
});

test('protected again over a kept replica, a cycle the earlier protection left in the cache is not reused', async () => {
  await machines.unprotect(ctx, 'vm1', { keepReplica: true });
  // What an earlier protection leaves when a cycle fails mid-transfer: that cycle's plan. This one
  // is in the format written before plans named their point, listing one block; cycle 1 is the
  // new protection's first (a checksum resync, the replica being there).
  const plan = JSON.stringify({
    mode: 'delta',
    sizeBytes: 64 * MiB,
    extents: [{ offset: 0, length: 65536 }],
  });
  await ctx.blobService
    .getContainerClient(CONTAINERS.cache)
    .getBlockBlobClient(cyclePlanBlobName('vm1', 'disk0', 1))
    .upload(plan, Buffer.byteLength(plan));
  const disk = await vm.disk();
  await disk.write(20 * MiB, pseudoRandom(1 * MiB, 2020));
  await disk.flush();

  await machines.protect(ctx, {
    name: 'vm1',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  const status = await waitForStatus(ctx, 'vm1', (s) => s.state === 'protected' && s.cycle >= 1);
  assert.ok(status.lastPoint, 'the new protection has a point');
  assertSameImage(
    await exportedImage(ctx, await pointById(ctx, 'vm1', status.lastPoint.id)),
    await vm.readAll(),
    'first point of the new protection',
  );
  const client = await ctx.client();
  await assertReplays(client.workflow.getHandle(protectWorkflowId('vm1')), 'protectMachine-fresh-cache');
});

test('unprotect removes the bitmaps, the replica and the points', async () => {
  const status = await machines.unprotect(ctx, 'vm1');
  assert.equal(status.state, 'disabled');
  assert.deepEqual(await ctx.vault.points('vm1'), []);
  const qmp = await QmpClient.connect(vm.daemon.qmpSocket);
  const nodes = await qmp.execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: unknown[] }>>(
    'query-named-block-nodes',
    { flat: true },
  );
  await qmp.close();
  assert.deepEqual(nodes.find((n) => n['node-name'] === 'disk0')?.['dirty-bitmaps'] ?? [], []);
});
