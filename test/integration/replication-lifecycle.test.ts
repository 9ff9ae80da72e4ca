// The life of a protected machine: app-consistent points through quiesce hooks, continueAsNew,
// disks that grow, appear and vanish, and RPO alerts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { QmpClient } from '../../lib/qemu/qmp-client';
import type { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { createPolicy } from '../../operations/policies';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let bed: Testbed;
let ctx: ControlContext;
let vm: TestMachine;
let hooksLog: string;
let failMarker: string;

before(async () => {
  bed = await startTestbed();
  ctx = bed.ctx;
  vm = await startTestMachine({ sizes: [16 * MiB, 16 * MiB] });
  for (const i of [0, 1]) {
    const disk = await vm.disk(i);
    await disk.write(0, pseudoRandom(4 * MiB, i + 1));
    await disk.flush();
  }
  hooksLog = path.join(vm.dir, 'hooks.log');
  failMarker = path.join(vm.dir, 'fail-quiesce');
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
});

async function qmp<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  const client = await QmpClient.connect(vm.daemon.qmpSocket);
  try {
    return await client.execute<T>(command, args);
  } finally {
    await client.close();
  }
}

test('app-consistent points run the quiesce and thaw commands around the freeze', async () => {
  await machines.protect(ctx, {
    name: 'life',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
    maxCyclesPerRun: 3,
    quiesce: {
      pre: `test ! -e ${failMarker} && echo "pre $OSR_MACHINE $OSR_POINT_KIND" >> ${hooksLog}`,
      post: `echo "post $OSR_MACHINE" >> ${hooksLog}`,
    },
  });
  await waitForStatus(ctx, 'life', (s) => s.state === 'protected');
  const app = await machines.takePoint(ctx, 'life', { kind: 'app', tag: 'before-upgrade' });
  assert.equal(app.kind, 'app');
  assert.equal((await pointById(ctx, 'life', app.id)).tag, 'before-upgrade');
  assert.deepEqual(fs.readFileSync(hooksLog, 'utf8').trim().split('\n'), ['pre life app', 'post life']);
  const status = await machines.machineStatus(ctx, 'life');
  assert.equal(status.lastAppPoint?.id, app.id);
});

test('a failing quiesce gives a crash-consistent point, an alert, and still thaws', async () => {
  fs.writeFileSync(failMarker, '');
  const point = await machines.takePoint(ctx, 'life', { kind: 'app' });
  fs.rmSync(failMarker);
  assert.equal(point.kind, 'crash');
  const status = await machines.machineStatus(ctx, 'life');
  assert.ok(
    status.alerts.some(
      (a) => a.kind === 'quiesce-failed' && /pre-quiesce command of life failed/.test(a.message),
    ),
    JSON.stringify(status.alerts),
  );
  assert.equal(fs.readFileSync(hooksLog, 'utf8').trim().split('\n').pop(), 'post life');
});

test('history stays bounded: the workflow continues as new and keeps its state', async () => {
  const client = await ctx.client();
  const handle = client.workflow.getHandle(protectWorkflowId('life'));
  const first = (await handle.describe()).runId;
  const before = await machines.machineStatus(ctx, 'life');
  for (let i = 0; i < 3; i++) await machines.takePoint(ctx, 'life', { kind: 'crash' });
  const after = await waitForStatus(ctx, 'life', (s) => s.stats.cycles >= before.stats.cycles + 3);
  // The new run starts once the update that asked for the last point has returned.
  const deadline = Date.now() + 20_000;
  while ((await handle.describe()).runId === first && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 200));
  assert.notEqual((await handle.describe()).runId, first, 'a new run at least every 3 cycles');
  assert.equal(after.lastAppPoint?.id, before.lastAppPoint?.id, 'state is carried over');
  assert.ok(
    after.alerts.some((a) => a.kind === 'quiesce-failed'),
    'alerts are carried over',
  );
});

test('a disk that grows is followed, and a disk added gets its own initial sync', async () => {
  // qemu-storage-daemon's writable export does not share resizing: drop it around the resize,
  // as a hypervisor's own block_resize on a VM's disk would not need to.
  await qmp('block-export-del', { id: 'disk1', mode: 'hard' });
  await qmp('block_resize', { 'node-name': 'disk1', size: 32 * MiB });
  await qmp('block-export-add', {
    type: 'nbd',
    id: 'disk1',
    'node-name': 'disk1',
    name: 'disk1',
    writable: true,
  });
  // An NBD connection sees the size of its handshake: write beyond the old end through a new one.
  const grown = await NbdClient.connect({ socket: vm.daemon.nbdSocket, exportName: 'disk1' });
  assert.equal(grown.size, 32 * MiB);
  await grown.write(24 * MiB, pseudoRandom(1 * MiB, 42));
  await grown.flush();
  await grown.close();
  const extra = path.join(vm.dir, 'disk2.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', extra, String(8 * MiB)]);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x42 0 1M', extra], { stdio: 'ignore' });
  await qmp('blockdev-add', {
    driver: 'qcow2',
    'node-name': 'disk2',
    file: { driver: 'file', filename: extra },
  });

  const point = await pointById(ctx, 'life', (await machines.takePoint(ctx, 'life', { kind: 'crash' })).id);
  assert.deepEqual(
    point.disks.map((d) => [d.diskId, d.sizeBytes]),
    [
      ['disk0', 16 * MiB],
      ['disk1', 32 * MiB],
      ['disk2', 8 * MiB],
    ],
  );
  const status = await machines.machineStatus(ctx, 'life');
  assert.ok(status.alerts.some((a) => a.kind === 'disk-added' && a.message.includes('disk2')));
  const source1 = await NbdClient.connect({ socket: vm.daemon.nbdSocket, exportName: 'disk1' });
  const disk1Now = await source1.read(0, source1.size);
  await source1.close();
  assertSameImage(await exportedImage(ctx, point, 'disk1'), disk1Now, 'grown disk1');
  const expected2 = Buffer.alloc(8 * MiB);
  expected2.fill(0x42, 0, MiB);
  assertSameImage(await exportedImage(ctx, point, 'disk2'), expected2, 'added disk2');
});

test('a disk that vanishes is left out with an alert naming the action; the others go on', async () => {
  await qmp('blockdev-del', { 'node-name': 'disk2' });
  const point = await pointById(ctx, 'life', (await machines.takePoint(ctx, 'life', { kind: 'crash' })).id);
  assert.deepEqual(
    point.disks.map((d) => d.diskId),
    ['disk0', 'disk1'],
  );
  const status = await machines.machineStatus(ctx, 'life');
  const alert = status.alerts.find((a) => a.kind === 'disk-vanished');
  assert.ok(alert, JSON.stringify(status.alerts));
  assert.match(alert.message, /disk2 vanished.*unprotect and protect the machine again/);
  assert.equal(status.disks.find((d) => d.diskId === 'disk2')?.excluded !== undefined, true);
});

test('RPO past the threshold raises an alert, and a new point clears it', async () => {
  await createPolicy(ctx, {
    name: 'tight',
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 2,
  });
  await machines.changePolicy(ctx, 'life', 'tight');
  await machines.pause(ctx, 'life');
  const alerted = await waitForStatus(
    ctx,
    'life',
    (s) => s.alerts.some((a) => a.kind === 'rpo-exceeded'),
    30_000,
  );
  assert.ok((alerted.rpoSeconds ?? 0) > 2);
  await machines.resume(ctx, 'life');
  await machines.takePoint(ctx, 'life', { kind: 'crash' });
  const cleared = await machines.machineStatus(ctx, 'life');
  assert.ok(!cleared.alerts.some((a) => a.kind === 'rpo-exceeded'), JSON.stringify(cleared.alerts));
});

test('the protect workflow (continued as new, with disk changes) replays deterministically', async () => {
  const client = await ctx.client();
  await assertReplays(client.workflow.getHandle(protectWorkflowId('life')), 'protectMachine-life');
});
