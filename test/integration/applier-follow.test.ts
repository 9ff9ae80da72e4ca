// The cloud applier following an upload still running (issue 16: a full copy is applied while it
// is sent), against a real Azurite: segments encoded by the real block pipeline and uploaded as the
// process server does, the plan first and the manifest last.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  applyCycle,
  CYCLE_NOT_UPLOADED,
  SEGMENT_CORRUPT,
} from '../../activities/cloud-applier/apply-replica';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { writeCycleManifest } from '../../lib/segments/cycle-layout';
import { writeCyclePlan } from '../../lib/segments/cycle-plan';
import { cycleManifestBlobName } from '../../lib/segments/cache-layout';
import type { Extent } from '../../lib/segments/segment-format';
import {
  KiB,
  blobService,
  compressible,
  cutIntoSegments,
  deps,
  failureOf,
  firstImage,
  pipeline,
  putSegment,
  readReplica,
  uploadCycle,
  useApplierStorage,
} from '../helpers/applier-fixture';
import { pollFor } from '../helpers/poll';

useApplierStorage();

const cache = () => blobService.getContainerClient(CONTAINERS.cache);

/** Waits until storage stamps a new blob later than `name` (Last-Modified has whole seconds). */
async function untilStorageClockPasses(name: string): Promise<void> {
  const { lastModified } = await cache().getBlobClient(name).getProperties();
  const probe = cache().getBlockBlobClient('clock-probe');
  await pollFor(async () => ((await probe.upload('', 0)).lastModified! > lastModified! ? true : undefined), {
    timeoutMs: 10_000,
    intervalMs: 100,
    failure: () => new Error('storage clock does not move'),
  });
}

test('an apply that follows an upload applies each segment as it comes and ends with the manifest', async () => {
  const machine = 'vm-follow';
  const { image, extents } = firstImage();
  const follow = { machine, diskId: 'scsi0', cycle: 1, sizeBytes: image.length, follow: { pollMs: 20 } };
  // Started before anything is uploaded, as the workflow starts it with the transfer (which
  // writes the cycle's plan first).
  const applying = applyCycle(deps, follow);
  await writeCyclePlan(cache(), machine, 'scsi0', 1, { mode: 'full', sizeBytes: image.length, extents });
  let ended = false;
  void applying.then(() => (ended = true));
  const up = await uploadCycle(machine, 'scsi0', 1, image, extents, {
    segmentBytes: 512 * KiB,
    manifest: false,
  });
  // Every segment is on the replica while the manifest is not written yet, and the apply waits for it.
  await pollFor(
    async () => ((await readReplica(machine, 'scsi0', image.length)).equals(image) ? true : undefined),
    {
      timeoutMs: 30_000,
      intervalMs: 20,
      failure: () => new Error('the followed segments reach the replica before the manifest'),
    },
  );
  assert.equal(ended, false, 'the apply waits for the manifest');
  await writeCycleManifest(blobService, {
    machine,
    diskId: 'scsi0',
    cycle: 1,
    segments: up.segments.length,
    sizeBytes: image.length,
  });
  assert.equal(
    (await applying).segments,
    up.segments.length,
    'it ends with the manifest, every segment applied',
  );
  // An upload that stops: the follower gives up, retryable by the workflow's other apply, not by itself.
  const stalled = applyCycle(deps, { ...follow, cycle: 2, follow: { pollMs: 20, idleMs: 300 } });
  await assert.rejects(stalled, (err) => {
    assert.equal(failureOf(err).type, CYCLE_NOT_UPLOADED);
    assert.equal(failureOf(err).nonRetryable, true);
    assert.match(failureOf(err).message, /no new segment and no manifest/);
    return true;
  });
  // A leftover of an earlier protection's cycle with the same number, older than this upload's
  // plan (a delete that failed), is never applied: with nothing newer the follower stalls.
  const old = firstImage();
  await uploadCycle('vm-old', 'scsi0', 1, old.image, old.extents, { segmentBytes: 512 * KiB });
  await untilStorageClockPasses(cycleManifestBlobName('vm-old', 'scsi0', 1)); // written last
  await writeCyclePlan(cache(), 'vm-old', 'scsi0', 1, {
    mode: 'full',
    sizeBytes: old.image.length,
    extents: old.extents,
  });
  await assert.rejects(
    applyCycle(deps, { ...follow, machine: 'vm-old', follow: { pollMs: 20, idleMs: 500 } }),
    (err) => {
      assert.equal(failureOf(err).type, CYCLE_NOT_UPLOADED);
      return true;
    },
  );
  assert.ok(
    (await readReplica('vm-old', 'scsi0', old.image.length)).equals(Buffer.alloc(old.image.length)),
    'nothing old applied',
  );
  // Without the disk's size a follower cannot open the replica: refused, not guessed.
  await assert.rejects(applyCycle(deps, { machine, diskId: 'scsi0', cycle: 3, follow: true }), (err) => {
    assert.equal(failureOf(err).nonRetryable, true);
    assert.match(failureOf(err).message, /needs the disk's sizeBytes/);
    return true;
  });
});

/**
 * An apply following cycle 1 of scsi0, started before the cycle's plan is written, as the workflow
 * starts it with the transfer. (Wrapped: an async function would wait for the apply itself.)
 */
async function startFollowing(machine: string, sizeBytes: number, extents: Extent[]) {
  const applying = applyCycle(deps, {
    machine,
    diskId: 'scsi0',
    cycle: 1,
    sizeBytes,
    follow: { pollMs: 20 },
  });
  applying.catch(() => undefined); // a test that expects a rejection awaits it later
  await writeCyclePlan(cache(), machine, 'scsi0', 1, { mode: 'full', sizeBytes, extents });
  return { applying };
}

/** Encodes segment `index` of cycle 1 of scsi0 (its `extents` of `image`) and uploads it. */
async function uploadSegment(
  machine: string,
  image: Buffer,
  index: number,
  extents: Extent[],
): Promise<void> {
  const data = Buffer.concat(extents.map((e) => image.subarray(e.offset, e.offset + e.length)));
  const { segment } = await pipeline!.encode({ machine, diskId: 'scsi0', cycle: 1, index, extents, data });
  await putSegment(machine, 'scsi0', 1, index, segment);
}

test('a segment uploaded late does not hold back the ones behind it: they are written meanwhile', async () => {
  const machine = 'vm-late';
  const segmentBytes = 64 * KiB;
  // More than twice the follower's 16: it must not stop at a window's distance from the late one.
  const image = Buffer.concat(Array.from({ length: 40 }, (_, i) => compressible(segmentBytes, i)));
  const extents = [{ offset: 0, length: image.length }];
  const cut = cutIntoSegments(extents, segmentBytes);
  const { applying } = await startFollowing(machine, image.length, extents);
  // Segment 0 is the slow upload: every other one is up first.
  for (let index = 1; index < cut.length; index++) await uploadSegment(machine, image, index, cut[index]!);
  // Every segment behind the late one reaches the replica while segment 0 is missing.
  const ahead = image.subarray(segmentBytes);
  await pollFor(
    async () =>
      (await readReplica(machine, 'scsi0', image.length)).subarray(segmentBytes).equals(ahead)
        ? true
        : undefined,
    {
      timeoutMs: 30_000,
      intervalMs: 20,
      failure: () => new Error('the segments behind the late one were not written while it was missing'),
    },
  );
  const before = await readReplica(machine, 'scsi0', image.length);
  assert.ok(
    before.subarray(0, segmentBytes).equals(Buffer.alloc(segmentBytes)),
    'the late segment is not there yet',
  );
  await uploadSegment(machine, image, 0, cut[0]!);
  await writeCycleManifest(blobService, {
    machine,
    diskId: 'scsi0',
    cycle: 1,
    segments: cut.length,
    sizeBytes: image.length,
  });
  assert.equal((await applying).segments, cut.length);
  assert.ok((await readReplica(machine, 'scsi0', image.length)).equals(image), 'the replica is the image');
});

test('a late segment that overlaps one written ahead of it ends the follow: the cycle is applied again in order', async () => {
  const machine = 'vm-overlap';
  const image = compressible(128 * KiB, 7);
  const later = compressible(64 * KiB, 8);
  const { applying } = await startFollowing(machine, image.length, [{ offset: 0, length: image.length }]);
  // Segment 1 rewrites the first half of what segment 0 covers; it is up first and written ahead.
  const laterImage = Buffer.concat([later, Buffer.alloc(64 * KiB)]);
  await uploadSegment(machine, laterImage, 1, [{ offset: 0, length: 64 * KiB }]);
  await pollFor(
    async () =>
      (await readReplica(machine, 'scsi0', image.length)).subarray(0, 64 * KiB).equals(later)
        ? true
        : undefined,
    { timeoutMs: 30_000, intervalMs: 20, failure: () => new Error('segment 1 was not written ahead') },
  );
  await uploadSegment(machine, image, 0, [{ offset: 0, length: image.length }]);
  await assert.rejects(applying, (err) => {
    assert.equal(failureOf(err).type, SEGMENT_CORRUPT);
    assert.equal(failureOf(err).nonRetryable, true);
    assert.match(failureOf(err).message, /segment 0 .*overlap: its range meets segment 1's/);
    return true;
  });
  // The in-order apply after the transfer then gives segment 1 the last word, as the cycle says.
  await writeCycleManifest(blobService, {
    machine,
    diskId: 'scsi0',
    cycle: 1,
    segments: 2,
    sizeBytes: image.length,
  });
  await applyCycle(deps, { machine, diskId: 'scsi0', cycle: 1 });
  assert.ok(
    (await readReplica(machine, 'scsi0', image.length)).equals(
      Buffer.concat([later, image.subarray(64 * KiB)]),
    ),
    'the replica is segment 0 overwritten by segment 1',
  );
});
