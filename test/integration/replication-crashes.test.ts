// kill -9 of the data-path workers in the middle of their work: nothing is lost, the work
// resumes where it stopped, and the points are exact. What was re-sent is counted at a proxy in
// front of storage (segment uploads by name and time), not read from the product's log; that the
// applier died mid-apply is seen on the replica itself.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { segmentCyclePrefix } from '../../lib/segments/segment-format';
import type { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import { pollFor } from '../helpers/poll';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import type { TestStack } from '../helpers/test-stack';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let bed: Testbed;
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
let proxy: FaultProxy;
// Slow enough to be caught in the middle: one pipeline thread, one upload at a time; its storage
// requests pass a proxy that counts them.
const slowPs: NodeJS.ProcessEnv = { OSR_PIPELINE_THREADS: '1', OSR_UPLOAD_CONCURRENCY: '1' };

before(async () => {
  bed = await startTestbed({
    processServerEnv: async (s) => {
      proxy = await startFaultProxy(s.config.storage.azuritePort);
      slowPs.OSR_AZURITE_PORT = String(proxy.port);
      return slowPs;
    },
  });
  ({ stack, ctx } = bed);
  vm = await startTestMachine({ sizes: [256 * MiB] });
  const disk = await vm.disk();
  for (let off = 0; off < 192 * MiB; off += 16 * MiB) await disk.write(off, pseudoRandom(16 * MiB, off + 1));
  await disk.flush();
});

after(async () => {
  await vm?.stop();
  await proxy?.close();
  await bed?.stop();
});

/** Names of the cycle's segments in the cache (committed blobs, as storage lists them). */
async function segmentNames(machine: string, cycle: number): Promise<Set<string>> {
  const names = new Set<string>();
  const cache = ctx.blobService.getContainerClient(CONTAINERS.cache);
  for await (const b of cache.listBlobsFlat({ prefix: segmentCyclePrefix(machine, 'disk0', cycle) }))
    if (b.name.endsWith('.seg')) names.add(b.name);
  return names;
}

/** Segment uploads of a cycle that crossed the proxy from request `from` on: blob names, in order. */
function segmentUploads(machine: string, cycle: number, from = 0, to?: number): string[] {
  // Path-style URLs: /<account>/<container>/<blob>; a whole blob in one Put Blob (a block or
  // metadata request carries comp=).
  const container = `/${CONTAINERS.cache}/`;
  return proxy.requests
    .slice(from, to)
    .filter((r) => r.startsWith('PUT ') && !/[?&]comp=/.test(r))
    .map((r) => decodeURIComponent(r.replace(/\?.*$/, '')))
    .filter((r) => r.includes(container))
    .map((r) => r.slice(r.indexOf(container) + container.length))
    .filter((name) => name.startsWith(segmentCyclePrefix(machine, 'disk0', cycle)) && name.endsWith('.seg'));
}

test('kill -9 of the process server during initial sync: the sync resumes, re-sends at most what was in flight, the point is exact', async () => {
  await machines.protect(ctx, {
    name: 'big',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await pollFor(async () => ((await segmentNames('big', 1)).size >= 6 ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 20,
    failure: () => new Error('the initial sync uploads segments'),
  });
  await stack.killWorker('process-server');
  const atKill = await segmentNames('big', 1);
  const requestsAtKill = proxy.requests.length;
  await stack.startWorker('process-server', slowPs);

  const status = await waitForStatus(ctx, 'big', (s) => s.state === 'protected', 180_000);
  const point = await pointById(ctx, 'big', status.lastPoint!.id);
  assertSameImage(await exportedImage(ctx, point), await vm.readAll(), 'first point after the crash');

  // Counted at the proxy: every segment of the sync, what reached it before the kill (the one in
  // flight included: its upload may still land after the kill, and after the listing above), and
  // what crossed it after the kill.
  const all = new Set(segmentUploads('big', 1));
  const sentBefore = new Set(segmentUploads('big', 1, 0, requestsAtKill));
  const after = segmentUploads('big', 1, requestsAtKill);
  const again = after.filter((n) => sentBefore.has(n));
  console.log(
    `# initial sync: ${all.size} segments; ${atKill.size} in the cache at the kill, ${sentBefore.size} sent before it; ${after.length} uploads after it, ${again.length} of a segment sent before`,
  );
  assert.ok(after.length > 0, 'the transfer went on on the new worker');
  assert.equal(new Set(after).size, after.length, 'no segment was sent twice after the restart');
  // With one upload at a time, at most one segment was in flight when the worker died.
  for (const name of atKill) assert.ok(sentBefore.has(name), `${name} in the cache was sent before the kill`);
  assert.ok(sentBefore.size - atKill.size <= 1, 'at most one upload was in flight at the kill');
  assert.ok(again.length <= 1, `segments sent before the kill sent again: ${JSON.stringify(again)}`);
  assert.equal(
    after.length - again.length,
    all.size - sentBefore.size,
    'exactly the missing segments were sent',
  );
});

test('kill -9 of the cloud applier while applying: no point from a partly applied cycle, and the next point is exact', async () => {
  // The applier's page writes to the replica pass a proxy that holds each one, so applying 128
  // MiB takes seconds and the kill lands inside it whatever the machine's speed.
  const slowApply = await startFaultProxy(stack.config.storage.azuritePort);
  slowApply.rules.push({
    match: (method, url) =>
      method === 'PUT' && /[?&]comp=page/.test(url) && url.includes(`/${CONTAINERS.replica}/`),
    action: 'delay',
    times: Infinity,
    delayMs: 400,
  });
  await stack.killWorker('cloud-applier');
  await stack.startWorker('cloud-applier', { OSR_AZURITE_PORT: String(slowApply.port) });
  const disk = await vm.disk();
  for (let off = 0; off < 128 * MiB; off += 16 * MiB) await disk.write(off, pseudoRandom(16 * MiB, off + 99));
  await disk.flush();
  const before = await ctx.vault.points('big');
  const pending = machines.takePoint(ctx, 'big', { kind: 'crash' });
  // Crash once the replica shows some of the new data (the apply has begun), seen in samples of
  // 64 KiB, one per 16 MiB written.
  const replica = replicaBlobClient(ctx.blobService, 'big/disk0');
  const samples = Array.from({ length: 8 }, (_, i) => i * 16 * MiB);
  const applied = async (off: number) =>
    (await replica.downloadToBuffer(off, 65536)).equals(pseudoRandom(16 * MiB, off + 99).subarray(0, 65536));
  await pollFor(
    async () => {
      for (const off of samples) if (await applied(off)) return true;
      return undefined;
    },
    {
      timeoutMs: 120_000,
      intervalMs: 20,
      failure: (e) => new Error(`the apply did not begin: ${String(e)}`),
    },
  );
  await stack.killWorker('cloud-applier');
  // On the replica, with no applier running: some of the new 128 MiB is there, not all of it.
  const newData = (await vm.readAll()).subarray(0, 128 * MiB);
  const atKill = await replica.downloadToBuffer(0, 128 * MiB);
  let same = 0;
  for (let off = 0; off < newData.length; off += 65536)
    if (atKill.subarray(off, off + 65536).equals(newData.subarray(off, off + 65536))) same += 65536;
  console.log(`# applier killed with ${same / MiB} of 128 MiB applied`);
  assert.ok(same > 0 && same < 128 * MiB, `the kill landed mid-apply: ${same} of ${128 * MiB} bytes applied`);
  assert.deepEqual(
    (await ctx.vault.points('big')).map((p) => p.id),
    before.map((p) => p.id),
    'no point is published while the cycle is not fully applied',
  );
  await slowApply.close();
  await stack.startWorker('cloud-applier');
  const brief = await pending;
  assertSameImage(
    await exportedImage(ctx, await pointById(ctx, 'big', brief.id)),
    await vm.readAll(),
    'point after the applier crash',
  );
  assert.equal((await ctx.vault.points('big')).length, before.length + 1, 'exactly one new point');
});
