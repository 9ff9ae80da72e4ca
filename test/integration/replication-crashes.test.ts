// kill -9 of the data-path workers in the middle of their work: nothing is lost, the work
// resumes where it stopped, and the points are exact.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { segmentCyclePrefix } from '../../lib/segments/segment-format';
import type { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import type { TestStack } from '../helpers/test-stack';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let bed: Testbed;
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
// Slow enough to be caught in the middle: one pipeline thread, one upload at a time.
const slowPs = { OSR_PIPELINE_THREADS: '1', OSR_UPLOAD_CONCURRENCY: '1' };

before(async () => {
  bed = await startTestbed({ processServerEnv: () => slowPs });
  ({ stack, ctx } = bed);
  vm = await startTestMachine({ sizes: [256 * MiB] });
  const disk = await vm.disk();
  for (let off = 0; off < 192 * MiB; off += 16 * MiB) await disk.write(off, pseudoRandom(16 * MiB, off + 1));
  await disk.flush();
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
});

async function segmentsInCache(machine: string, cycle: number): Promise<number> {
  let n = 0;
  const cache = ctx.blobService.getContainerClient(CONTAINERS.cache);
  for await (const b of cache.listBlobsFlat({ prefix: segmentCyclePrefix(machine, 'disk0', cycle) }))
    if (b.name.endsWith('.seg')) n++;
  return n;
}

function transferLogs(): Array<{ attempt: number; resumed: number; uploaded: number }> {
  const dir = path.join(stack.stateDir, 'logs');
  return fs
    .readdirSync(dir)
    .filter((f) => f.startsWith('process-server'))
    .flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n'))
    .filter((l) => l.includes('transfer slice done'))
    .map((l) => JSON.parse(l) as { attempt: number; resumed: number; uploaded: number });
}

test('kill -9 of the process server during initial sync: the sync resumes, re-sends at most what was in flight, the point is exact', async () => {
  await machines.protect(ctx, {
    name: 'big',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  const deadline = Date.now() + 60_000;
  while ((await segmentsInCache('big', 1)) < 6) {
    assert.ok(Date.now() < deadline, 'the initial sync uploads segments');
    await new Promise((r) => setTimeout(r, 20));
  }
  await stack.killWorker('process-server');
  const uploadedBeforeKill = await segmentsInCache('big', 1);
  await stack.startWorker('process-server', slowPs);

  const status = await waitForStatus(ctx, 'big', (s) => s.state === 'protected', 180_000);
  const point = await pointById(ctx, 'big', status.lastPoint!.id);
  assertSameImage(await exportedImage(ctx, point), await vm.readAll(), 'first point after the crash');

  const total = 192 / 4; // 4 MiB segments of 192 MiB of data
  const resumed = transferLogs().filter((l) => l.attempt > 1);
  assert.ok(resumed.length > 0, 'the transfer was retried on the new worker');
  const uploadedAfter = resumed.reduce((a, l) => a + l.uploaded, 0);
  // With one upload at a time, at most one segment was in flight when the worker died.
  assert.ok(
    uploadedAfter <= total - uploadedBeforeKill + 1,
    `re-sent ${uploadedAfter} of ${total} segments; ${uploadedBeforeKill} were in the cache at the kill`,
  );
  assert.ok(resumed[0]!.resumed >= uploadedBeforeKill - 1, 'the retry skipped what was already uploaded');
});

test('kill -9 of the cloud applier while applying: no point from a partly applied cycle, and the next point is exact', async () => {
  const disk = await vm.disk();
  for (let off = 0; off < 128 * MiB; off += 16 * MiB) await disk.write(off, pseudoRandom(16 * MiB, off + 99));
  await disk.flush();
  const before = await ctx.vault.points('big');
  const cycle = (await machines.machineStatus(ctx, 'big')).cycle + 1;
  const pending = machines.takePoint(ctx, 'big', { kind: 'crash' });
  // Wait until the cycle is uploaded (its manifest exists) and applying begins, then crash.
  const cache = ctx.blobService.getContainerClient(CONTAINERS.cache);
  const deadline = Date.now() + 60_000;
  while (!(await cache.getBlobClient(`${segmentCyclePrefix('big', 'disk0', cycle)}manifest.json`).exists())) {
    assert.ok(Date.now() < deadline, 'the cycle is uploaded');
    await new Promise((r) => setTimeout(r, 20));
  }
  await stack.killWorker('cloud-applier');
  assert.deepEqual(
    (await ctx.vault.points('big')).map((p) => p.id),
    before.map((p) => p.id),
    'no point is published while the cycle is not fully applied',
  );
  await stack.startWorker('cloud-applier');
  const brief = await pending;
  assertSameImage(
    await exportedImage(ctx, await pointById(ctx, 'big', brief.id)),
    await vm.readAll(),
    'point after the applier crash',
  );
  assert.equal((await ctx.vault.points('big')).length, before.length + 1, 'exactly one new point');
});
