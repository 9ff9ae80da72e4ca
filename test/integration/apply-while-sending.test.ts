// A full copy is applied while it is still being sent (issue 16): an apply that starts with the
// transfer follows the upload, writing each segment to the replica as it arrives in the cache, and
// ends with the cycle's manifest. Real parts: qemu-storage-daemon machines, the Temporal dev
// server, Azurite behind a fault proxy, the workers as processes. What the workflow asked of the
// applier is read from its history; what the replica holds, from the replica and the point.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { cycleManifestBlobName, segmentBlobName } from '../../lib/segments/cache-layout';
import type { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import type { FaultProxy } from '../helpers/fault-proxy';
import { scheduledActivities, type ScheduledActivity } from '../helpers/history-activities';
import { pollFor } from '../helpers/poll';
import { assertReplays } from '../helpers/replay';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startProxiedTestbed, type ProxiedTestbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let bed: ProxiedTestbed;
let ctx: ControlContext;
let proxy: FaultProxy;
const vms: TestMachine[] = [];

/** A machine with 48 MiB of incompressible data on a 64 MiB disk: a dozen 4-MiB segments. */
async function machineWithData(seed: number): Promise<TestMachine> {
  const vm = await startTestMachine({ sizes: [64 * MiB] });
  vms.push(vm);
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(48 * MiB, seed));
  await disk.flush();
  return vm;
}

async function protectAndCheck(name: string, vm: TestMachine): Promise<void> {
  await machines.protect(ctx, {
    name,
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  const status = await waitForStatus(ctx, name, (s) => s.state === 'protected');
  assert.ok(status.lastPoint, `${name} has a first point`);
  const point = await pointById(ctx, name, status.lastPoint.id);
  assertSameImage(await exportedImage(ctx, point), await vm.readAll(), `${name}'s first point`);
}

interface ApplyInput {
  startIndex?: number;
  follow?: boolean;
  sizeBytes?: number;
}
const applies = (scheduled: ScheduledActivity[]) =>
  scheduled.filter((a) => a.name === 'applyCycle').map((a) => a.input as ApplyInput);

before(async () => {
  bed = await startProxiedTestbed();
  proxy = bed.proxy;
  ctx = bed.ctx;
});

after(async () => {
  for (const vm of vms) await vm.stop();
  await bed?.stop();
});

test('a full copy is applied while it is sent, and the first point equals the source', async () => {
  const vm = await machineWithData(11);
  // The manifest, written after the last segment, is held at the proxy: whatever the replica
  // holds before it reaches storage was applied while the cycle was still being sent.
  const manifest = cycleManifestBlobName('ws1', 'disk0', 1);
  proxy.rules.push({
    match: (m, url) => m === 'PUT' && url.includes(`/${CONTAINERS.cache}/${manifest}`),
    action: 'delay',
    delayMs: 10_000,
    times: 1,
  });
  const protecting = protectAndCheck('ws1', vm);
  const firstSegment = (await vm.readAll()).subarray(0, 4 * MiB);
  const replica = replicaBlobClient(ctx.blobService, 'ws1/disk0');
  const cache = ctx.blobService.getContainerClient(CONTAINERS.cache);
  await pollFor(
    async () =>
      (await replica.exists()) && (await replica.downloadToBuffer(0, 4 * MiB)).equals(firstSegment)
        ? true
        : undefined,
    { timeoutMs: 120_000, intervalMs: 50, failure: () => new Error('the first segment reaches the replica') },
  );
  assert.equal(await cache.getBlobClient(manifest).exists(), false, 'applied before the transfer ended');
  await protecting;
  const [follow, ...others] = applies(
    await scheduledActivities(await ctx.client(), protectWorkflowId('ws1')),
  );
  assert.deepEqual(follow, { machine: 'ws1', diskId: 'disk0', cycle: 1, follow: true, sizeBytes: 64 * MiB });
  assert.deepEqual(others, [], 'the apply that followed the upload did the whole cycle');
  await assertReplays(
    (await ctx.client()).workflow.getHandle(protectWorkflowId('ws1')),
    'protectMachine-apply-while-sending',
  );
});

test('a segment that fails verification stops the follower; the apply after the transfer has it sent again', async () => {
  const vm = await machineWithData(12);
  // Segment 1 of the first cycle is damaged on its way to the cache: the follower finds it and
  // fails; the transfer goes on; the apply after it finds it again, has it sent again, and
  // applies the cycle.
  proxy.rules.push({
    match: (m, url) =>
      m === 'PUT' && url.includes(`/${CONTAINERS.cache}/${segmentBlobName('ws2', 'disk0', 1, 1)}`),
    action: 'corrupt',
    times: 1,
  });
  const [sentBefore, hitsBefore] = [proxy.requests.length, proxy.hits.length];
  await protectAndCheck('ws2', vm);
  const hits = proxy.hits.slice(hitsBefore);
  assert.equal(hits.length, 1, 'the proxy corrupted one segment upload');
  const corrupted = (hits[0] as string).replace(/^corrupt /, '');
  const puts = proxy.requests.slice(sentBefore).filter((r) => r === corrupted);
  assert.equal(puts.length, 2, `the corrupted segment was sent twice: ${corrupted}`);
  const status = await machines.machineStatus(ctx, 'ws2');
  assert.ok(
    status.alerts.some((a) => a.kind === 'segment-corrupt' && /segments 1 of disk0/.test(a.message)),
    `a segment-corrupt alert names segment 1: ${JSON.stringify(status.alerts)}`,
  );
  const [follow, ...after] = applies(await scheduledActivities(await ctx.client(), protectWorkflowId('ws2')));
  assert.equal(follow?.follow, true, 'an apply followed the upload');
  // Then the apply of the whole cycle (corrupt: segment 1 sent again) and once more.
  assert.equal(after.length, 2, JSON.stringify(after));
  assert.ok(
    after.every((a) => a.follow === undefined && a.startIndex === undefined),
    'whole applies after the transfer',
  );
});
