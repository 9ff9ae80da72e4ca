// The cloud applier against a real Azurite (in memory, on a free port): segments encoded by the
// real block pipeline and uploaded as the process server does, applied to replica page blobs,
// published as snapshots, exported and compared with the source bytes.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { ApplicationFailure } from '@temporalio/common';
import {
  applyCycle,
  CYCLE_NOT_UPLOADED,
  SEGMENT_CORRUPT,
} from '../../activities/cloud-applier/apply-replica';
import type { SegmentCorruptDetails } from '../../activities/cloud-applier/apply-replica';
import { deleteCycleSegments } from '../../lib/segments/cycle-cleanup';
import {
  cycleManifestBlobName,
  readCycleManifest,
  writeCycleManifest,
} from '../../lib/segments/cycle-layout';
import { exportPoint } from '../../activities/cloud-applier/export-point';
import { POINT_ID_CONFLICT, publishPoint } from '../../activities/cloud-applier/publish-point';
import type { PublishPointInput } from '../../activities/cloud-applier/publish-point';
import { replicaChecksums } from '../../activities/cloud-applier/replica-checksums';
import { checksumAt, parseChecksums } from '../../lib/segments/checksums';
import type { ApplierDeps } from '../../activities/cloud-applier/replica-disk';
import {
  DISK_SHRUNK,
  deleteReplica,
  ensureReplicaDisk,
  replicaBlobClient,
} from '../../activities/cloud-applier/replica-disk';
import { pointsToPrune, pruneRetention } from '../../activities/cloud-applier/retention';
import { BlockPipeline } from '../../lib/segments/block-pipeline';
import { EncryptionKey } from '../../lib/segments/keys';
import { segmentBlobName } from '../../lib/segments/segment-format';
import type { Extent } from '../../lib/segments/segment-format';
import type { RecoveryPoint, ReplicationPolicy } from '../../shared/replication-types';
import { startAzurite } from '../../stack/azurite';
import { stopPid } from '../../lib/process/managed-process';
import type { RunningProcess } from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';
import { azuriteConnectionString, CONTAINERS, ensureContainers } from '../../lib/azure/blob-client';
import { Vault } from '../../lib/azure/vault';

const KiB = 1024;
const MiB = 1024 * KiB;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-applier-'));
let azurite: RunningProcess | undefined;
let blobService: BlobServiceClient;
let pipeline: BlockPipeline | undefined;
let deps: ApplierDeps;

before(async () => {
  const port = await freePort();
  azurite = await startAzurite({ port, logFile: path.join(tmp, 'azurite.log') });
  blobService = BlobServiceClient.fromConnectionString(azuriteConnectionString(port));
  await ensureContainers(blobService);
  // One pipeline per process: it encodes (as the process server) and decodes (as the applier).
  pipeline = new BlockPipeline({ threads: 2, maxBytesInFlight: 16 * MiB, key: EncryptionKey.generate() });
  deps = { blobService, pipeline, vault: new Vault(blobService) };
});

after(async () => {
  await pipeline?.destroy();
  if (azurite) await stopPid(azurite.pid);
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// The process server's side, as far as the applier sees it.

function compressible(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let at = 0; at < length; ) at += out.write(`block ${seed} line ${at % 977}\n`, at);
  return out;
}

/** Cuts extents into segments of at most `segmentBytes` raw bytes each. */
function cutIntoSegments(extents: readonly Extent[], segmentBytes: number): Extent[][] {
  const segments: Extent[][] = [];
  let current: Extent[] = [];
  let used = 0;
  for (const extent of extents) {
    for (let at = extent.offset; at < extent.offset + extent.length; ) {
      if (used === segmentBytes) {
        segments.push(current);
        current = [];
        used = 0;
      }
      const length = Math.min(extent.offset + extent.length - at, segmentBytes - used);
      current.push({ offset: at, length });
      used += length;
      at += length;
    }
  }
  if (current.length > 0) segments.push(current);
  return segments;
}

interface Uploaded {
  /** The segments as encoded (before any tampering), index = position. */
  segments: Buffer[];
  extents: Extent[][];
}

/** Encodes the extents' bytes of `image` and uploads segments then the manifest, as the process server does. */
async function uploadCycle(
  machine: string,
  diskId: string,
  cycle: number,
  image: Buffer,
  extents: Extent[],
  options: { segmentBytes?: number; sizeBytes?: number; manifest?: boolean } = {},
): Promise<Uploaded> {
  const cut = cutIntoSegments(extents, options.segmentBytes ?? 1 * MiB);
  const cache = blobService.getContainerClient(CONTAINERS.cache);
  const segments = await Promise.all(
    cut.map(async (segmentExtents, index) => {
      const data = Buffer.concat(segmentExtents.map((e) => image.subarray(e.offset, e.offset + e.length)));
      const { segment } = await pipeline!.encode({
        machine,
        diskId,
        cycle,
        index,
        extents: segmentExtents,
        data,
      });
      await cache.getBlockBlobClient(segmentBlobName(machine, diskId, cycle, index)).uploadData(segment);
      return segment;
    }),
  );
  if (options.manifest !== false) {
    await writeCycleManifest(blobService, {
      machine,
      diskId,
      cycle,
      segments: segments.length,
      sizeBytes: options.sizeBytes ?? image.length,
    });
  }
  return { segments, extents: cut };
}

async function putSegment(
  machine: string,
  diskId: string,
  cycle: number,
  index: number,
  bytes: Buffer,
): Promise<void> {
  await blobService
    .getContainerClient(CONTAINERS.cache)
    .getBlockBlobClient(segmentBlobName(machine, diskId, cycle, index))
    .uploadData(bytes);
}

/** The replica base blob as a disk image of `size` bytes. */
async function readReplica(machine: string, diskId: string, size: number): Promise<Buffer> {
  return replicaBlobClient(blobService, `${machine}/${diskId}`).downloadToBuffer(0, size);
}

async function exportToBuffer(
  point: RecoveryPoint,
  diskId: string,
): Promise<{ image: Buffer; written: number }> {
  const outFile = path.join(tmp, `${point.id}-${diskId}.raw`);
  const written = await exportPoint(deps, { point, diskId, outFile });
  const image = fs.readFileSync(outFile);
  fs.rmSync(outFile);
  return { image, written };
}

function publishInput(
  machine: string,
  cycle: number,
  pointId: string,
  disks: [string, number][],
  instant?: string,
): PublishPointInput {
  return {
    machine,
    cycle,
    pointId,
    instant: instant ?? new Date().toISOString(),
    kind: 'crash',
    disks: disks.map(([diskId, sizeBytes]) => ({ diskId, sizeBytes })),
  };
}

async function snapshotsOf(blob: string): Promise<{ snapshot: string; point?: string }[]> {
  const out: { snapshot: string; point?: string }[] = [];
  const container = blobService.getContainerClient(CONTAINERS.replica);
  for await (const item of container.listBlobsFlat({
    prefix: blob,
    includeSnapshots: true,
    includeMetadata: true,
  })) {
    if (item.name === blob && item.snapshot)
      out.push({ snapshot: item.snapshot, point: item.metadata?.osrpoint });
  }
  return out;
}

function failureOf(err: unknown): ApplicationFailure {
  assert.ok(err instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(err)}`);
  return err;
}

const extentBytes = (extents: readonly Extent[]): number => extents.reduce((n, e) => n + e.length, 0);

/**
 * A 6 MiB + 1.5 KiB disk mixing random data, zeros that are written (sent as zero extents),
 * compressible data and holes (never written, not in the extents).
 */
function firstImage(): { image: Buffer; extents: Extent[] } {
  const size = 6 * MiB + 1536;
  const image = Buffer.alloc(size);
  randomBytes(1 * MiB).copy(image, 0);
  // 1 MiB .. 1.5 MiB: allocated zeros
  compressible(512 * KiB, 1).copy(image, 1536 * KiB);
  // 2 MiB .. 3 MiB: hole
  randomBytes(512 * KiB).copy(image, 3 * MiB);
  // 3.5 MiB .. 5 MiB: hole
  randomBytes(size - 5 * MiB).copy(image, 5 * MiB);
  const extents = [
    { offset: 0, length: 2 * MiB },
    { offset: 3 * MiB, length: 512 * KiB },
    { offset: 5 * MiB, length: size - 5 * MiB },
  ];
  return { image, extents };
}

// ---------------------------------------------------------------------------------------------

describe('cycle apply, points and export', () => {
  test('full sync, delta cycles and a grown disk export byte for byte; older points stay unchanged', async () => {
    const machine = 'vm-a';
    const disk = 'scsi0';
    const { image: image1, extents: extents1 } = firstImage();
    const up1 = await uploadCycle(machine, disk, 1, image1, extents1);
    assert.ok(up1.segments.length >= 4, 'several segments');

    const progress: number[] = [];
    const summary1 = await applyCycle(deps, {
      machine,
      diskId: disk,
      cycle: 1,
      onProgress: (n) => progress.push(n),
    });
    assert.equal(summary1.segments, up1.segments.length);
    assert.equal(summary1.appliedBytes + summary1.clearedBytes, extentBytes(extents1));
    assert.ok(summary1.clearedBytes >= 512 * KiB, `zeros sent as zero extents (${summary1.clearedBytes})`);
    assert.deepEqual(
      progress,
      [...progress].sort((a, b) => a - b),
      'progress only moves forward',
    );
    assert.equal(progress[progress.length - 1], up1.segments.length);

    const p1 = await publishPoint(deps, publishInput(machine, 1, 'p1', [[disk, image1.length]]));
    const export1 = await exportToBuffer(p1, disk);
    assert.equal(export1.image.length, image1.length);
    assert.ok(export1.image.equals(image1), 'point 1 is the source image');
    assert.ok(
      export1.written < image1.length - 2 * MiB,
      `holes not written (${export1.written} bytes written)`,
    );

    // Cycle 2: new data over old data, zeros over old data, data in a former hole.
    const image2 = Buffer.from(image1);
    randomBytes(128 * KiB).copy(image2, 64 * KiB);
    image2.fill(0, 3 * MiB, 3 * MiB + 256 * KiB);
    compressible(256 * KiB, 2).copy(image2, 2560 * KiB);
    const extents2 = [
      { offset: 64 * KiB, length: 128 * KiB },
      { offset: 2560 * KiB, length: 256 * KiB },
      { offset: 3 * MiB, length: 256 * KiB },
    ];
    await uploadCycle(machine, disk, 2, image2, extents2, { segmentBytes: 256 * KiB });
    const summary2 = await applyCycle(deps, { machine, diskId: disk, cycle: 2 });
    assert.equal(summary2.clearedBytes, 256 * KiB);
    const p2 = await publishPoint(deps, publishInput(machine, 2, 'p2', [[disk, image2.length]]));
    assert.ok((await exportToBuffer(p2, disk)).image.equals(image2), 'point 2 is the changed image');

    // Cycle 3: the disk grew by 1 MiB - 1.5 KiB and got data at the end.
    const image3 = Buffer.alloc(7 * MiB);
    image2.copy(image3);
    randomBytes(512 * KiB).copy(image3, 6 * MiB + 512 * KiB);
    await uploadCycle(machine, disk, 3, image3, [{ offset: 6 * MiB + 512 * KiB, length: 512 * KiB }]);
    await applyCycle(deps, { machine, diskId: disk, cycle: 3 });
    const p3 = await publishPoint(deps, publishInput(machine, 3, 'p3', [[disk, image3.length]]));
    assert.ok((await exportToBuffer(p3, disk)).image.equals(image3), 'point 3 is the grown image');

    // The base blob moved on twice; the older snapshots did not.
    assert.ok(
      (await exportToBuffer(p1, disk)).image.equals(image1),
      'point 1 unchanged after cycles 2 and 3',
    );
    assert.ok((await exportToBuffer(p2, disk)).image.equals(image2), 'point 2 unchanged after cycle 3');

    // The catalog has the three points, oldest first.
    assert.deepEqual(
      (await deps.vault.points(machine)).map((p) => [p.id, p.cycle, p.disks[0]?.snapshot]),
      [p1, p2, p3].map((p) => [p.id, p.cycle, p.disks[0]?.snapshot]),
    );
  });

  test('a point covers every disk of the machine, each from its own replica', async () => {
    const machine = 'vm-multi';
    const a = firstImage();
    // disk-b ends in a hole: the export must still be the disk's full size.
    const b = { image: Buffer.alloc(3 * MiB), extents: [{ offset: 0, length: 2 * MiB }] };
    randomBytes(2 * MiB).copy(b.image);
    await uploadCycle(machine, 'disk-a', 1, a.image, a.extents);
    await uploadCycle(machine, 'disk-b', 1, b.image, b.extents);
    await Promise.all(['disk-a', 'disk-b'].map((diskId) => applyCycle(deps, { machine, diskId, cycle: 1 })));
    const point = await publishPoint(
      deps,
      publishInput(machine, 1, 'pm1', [
        ['disk-a', a.image.length],
        ['disk-b', b.image.length],
      ]),
    );
    assert.deepEqual(
      point.disks.map((d) => d.blob),
      ['vm-multi/disk-a', 'vm-multi/disk-b'],
    );
    assert.ok((await exportToBuffer(point, 'disk-a')).image.equals(a.image));
    assert.ok((await exportToBuffer(point, 'disk-b')).image.equals(b.image));
    await assert.rejects(
      exportPoint(deps, { point, diskId: 'disk-c', outFile: path.join(tmp, 'x.raw') }),
      /has no disk disk-c/,
    );
  });

  test('re-applying a cycle, whole or from a resume index, is harmless', async () => {
    const machine = 'vm-b';
    const disk = 'scsi0';
    const { image: image1, extents } = firstImage();
    await uploadCycle(machine, disk, 1, image1, extents);
    await applyCycle(deps, { machine, diskId: disk, cycle: 1 });
    const image2 = Buffer.from(image1);
    randomBytes(1 * MiB).copy(image2, 256 * KiB);
    image2.fill(0, 5 * MiB, 5 * MiB + 64 * KiB);
    const up2 = await uploadCycle(
      machine,
      disk,
      2,
      image2,
      [
        { offset: 256 * KiB, length: 1 * MiB },
        { offset: 5 * MiB, length: 64 * KiB },
      ],
      {
        segmentBytes: 256 * KiB,
      },
    );

    // A worker that died after segment 2: the retry resumes from the heartbeated index.
    const progress: number[] = [];
    const resumed = await applyCycle(deps, {
      machine,
      diskId: disk,
      cycle: 2,
      startIndex: 2,
      onProgress: (n) => progress.push(n),
    });
    assert.equal(resumed.segments, up2.segments.length - 2, 'only the segments from the resume index');
    // Segments may finish out of order, so the watermark can skip values; it never goes below the start.
    assert.ok(
      progress.length > 0 && progress.every((n) => n > 2),
      `progress from the resume index: ${progress.join(',')}`,
    );
    assert.equal(progress[progress.length - 1], up2.segments.length);
    await applyCycle(deps, { machine, diskId: disk, cycle: 2 });
    assert.ok((await readReplica(machine, disk, image2.length)).equals(image2));
    // And once more, whole, as a retry after a crash before the point was published.
    const again = await applyCycle(deps, { machine, diskId: disk, cycle: 2 });
    assert.equal(again.segments, up2.segments.length);
    assert.ok((await readReplica(machine, disk, image2.length)).equals(image2), 'same image after re-apply');
    const point = await publishPoint(deps, publishInput(machine, 2, 'pb2', [[disk, image2.length]]));
    assert.ok((await exportToBuffer(point, disk)).image.equals(image2));

    // Resuming at the end applies nothing; beyond it is refused.
    assert.deepEqual(
      await applyCycle(deps, { machine, diskId: disk, cycle: 2, startIndex: up2.segments.length }),
      {
        diskId: disk,
        segments: 0,
        appliedBytes: 0,
        clearedBytes: 0,
      },
    );
    await assert.rejects(
      applyCycle(deps, { machine, diskId: disk, cycle: 2, startIndex: up2.segments.length + 1 }),
      (err) => {
        assert.equal(failureOf(err).nonRetryable, true);
        return true;
      },
    );
  });

  test('a cycle without its manifest is not applied and the failure is retryable', async () => {
    const machine = 'vm-m';
    const { image, extents } = firstImage();
    await uploadCycle(machine, 'scsi0', 1, image, extents, { manifest: false });
    await assert.rejects(applyCycle(deps, { machine, diskId: 'scsi0', cycle: 1 }), (err) => {
      const failure = failureOf(err);
      assert.equal(failure.type, CYCLE_NOT_UPLOADED);
      assert.equal(failure.nonRetryable, false);
      assert.match(failure.message, /not uploaded yet.*manifest\.json/);
      return true;
    });
    const replica = await replicaBlobClient(blobService, `${machine}/scsi0`).exists();
    assert.equal(replica, false, 'nothing was created or written');
  });
});

describe('verification: a bad segment is never applied', () => {
  // Cycle 1 writes a base image; cycle 2 has four segments over four distinct 256 KiB regions.
  async function prepare(
    machine: string,
  ): Promise<{ base: Buffer; next: Buffer; up: Uploaded; regions: Extent[] }> {
    const { image: base, extents } = firstImage();
    await uploadCycle(machine, 'scsi0', 1, base, extents);
    await applyCycle(deps, { machine, diskId: 'scsi0', cycle: 1 });
    const next = Buffer.from(base);
    const regions = [0, 1, 2, 3].map((i) => ({ offset: i * 256 * KiB, length: 256 * KiB }));
    randomBytes(1 * MiB).copy(next, 0);
    const up = await uploadCycle(machine, 'scsi0', 2, next, regions, { segmentBytes: 256 * KiB });
    assert.equal(up.segments.length, 4);
    return { base, next, up, regions };
  }

  async function expectCorrupt(machine: string, indices: number[], reasons: RegExp[]): Promise<number[]> {
    const progress: number[] = [];
    await assert.rejects(
      applyCycle(deps, { machine, diskId: 'scsi0', cycle: 2, onProgress: (n) => progress.push(n) }),
      (err) => {
        const failure = failureOf(err);
        assert.equal(failure.type, SEGMENT_CORRUPT);
        assert.equal(failure.nonRetryable, true);
        const details = failure.details?.[0] as SegmentCorruptDetails;
        assert.deepEqual(details.indices, indices);
        assert.equal(details.reasons.length, reasons.length);
        details.reasons.forEach((reason, i) => assert.match(reason, reasons[i]!));
        return true;
      },
    );
    return progress;
  }

  /** Which of the four regions hold cycle 2's bytes (true) or still cycle 1's (false). */
  async function appliedRegions(
    machine: string,
    base: Buffer,
    next: Buffer,
    regions: Extent[],
  ): Promise<boolean[]> {
    const replica = await readReplica(machine, 'scsi0', base.length);
    return regions.map((r) => {
      const now = replica.subarray(r.offset, r.offset + r.length);
      if (now.equals(next.subarray(r.offset, r.offset + r.length))) return true;
      assert.ok(
        now.equals(base.subarray(r.offset, r.offset + r.length)),
        `region at ${r.offset} is neither old nor new`,
      );
      return false;
    });
  }

  test('a flipped byte fails the segment: SegmentCorrupt names it, nothing from it or after it is written', async () => {
    const machine = 'vm-c';
    const { base, next, up, regions } = await prepare(machine);
    const bad = Buffer.from(up.segments[1]!);
    const at = bad.length - 1000;
    bad[at] = bad[at]! ^ 0x01;
    await putSegment(machine, 'scsi0', 2, 1, bad);
    const progress = await expectCorrupt(machine, [1], [/^auth-failed/]);
    assert.deepEqual(progress, [1], 'only segment 0 was reported written');
    assert.deepEqual(await appliedRegions(machine, base, next, regions), [true, false, false, false]);
  });

  test('a truncated segment fails the same way', async () => {
    const machine = 'vm-d';
    const { base, next, up, regions } = await prepare(machine);
    await putSegment(machine, 'scsi0', 2, 2, up.segments[2]!.subarray(0, up.segments[2]!.length - 4096));
    const progress = await expectCorrupt(machine, [2], [/^truncated/]);
    // Segments 0 and 1 may finish in either order: the watermark then moves 0 -> 2 at once.
    assert.equal(progress[progress.length - 1], 2);
    assert.ok(
      progress.every((n, i) => n > (progress[i - 1] ?? 0)),
      `strictly increasing: ${progress.join(',')}`,
    );
    assert.deepEqual(await appliedRegions(machine, base, next, regions), [true, true, false, false]);
  });

  test('every bad segment seen is reported; a misplaced, a missing and an oversized one count as corrupt', async () => {
    const machine = 'vm-e';
    const { base, next, up, regions } = await prepare(machine);
    // Segment 3's valid bytes stored as segment 1: authentic, but in the wrong place.
    await putSegment(machine, 'scsi0', 2, 1, up.segments[3]!);
    await blobService
      .getContainerClient(CONTAINERS.cache)
      .deleteBlob(segmentBlobName(machine, 'scsi0', 2, 2));
    await putSegment(machine, 'scsi0', 2, 3, Buffer.alloc(6 * MiB, 7));
    await expectCorrupt(machine, [1, 2, 3], [/^misplaced: .*holds segment 3/, /^missing/, /^oversized/]);
    assert.deepEqual(await appliedRegions(machine, base, next, regions), [true, false, false, false]);

    // A segment of another disk under this disk's name is misplaced too.
    const other = await uploadCycle('vm-other', 'scsi0', 2, next, [regions[1]!], { manifest: false });
    await putSegment(machine, 'scsi0', 2, 1, other.segments[0]!);
    await putSegment(machine, 'scsi0', 2, 2, up.segments[2]!);
    await putSegment(machine, 'scsi0', 2, 3, up.segments[3]!);
    await expectCorrupt(machine, [1], [/^misplaced: .*vm-other/]);

    // Once the segments are right again, the cycle applies.
    await putSegment(machine, 'scsi0', 2, 1, up.segments[1]!);
    await applyCycle(deps, { machine, diskId: 'scsi0', cycle: 2 });
    assert.deepEqual(await appliedRegions(machine, base, next, regions), [true, true, true, true]);
  });
});

describe('publishing points', () => {
  test('publishPoint twice gives one point; a snapshot left by a crash is reused', async () => {
    const machine = 'vm-p';
    const { image, extents } = firstImage();
    await uploadCycle(machine, 'scsi0', 1, image, extents);
    await applyCycle(deps, { machine, diskId: 'scsi0', cycle: 1 });
    const input = publishInput(machine, 1, 'pp1', [['scsi0', image.length]]);
    const first = await publishPoint(deps, input);
    const second = await publishPoint(deps, input);
    assert.deepEqual(second, first);
    assert.equal((await deps.vault.points(machine)).length, 1);
    assert.equal((await snapshotsOf(`${machine}/scsi0`)).length, 1);

    // A crash after the snapshot and before the catalog write of point pp2.
    const crashed = await replicaBlobClient(blobService, `${machine}/scsi0`).createSnapshot({
      metadata: { osrpoint: 'pp2' },
    });
    const pp2 = await publishPoint(deps, publishInput(machine, 2, 'pp2', [['scsi0', image.length]]));
    assert.equal(pp2.disks[0]?.snapshot, crashed.snapshot, 'the snapshot already taken is reused');
    assert.equal((await snapshotsOf(`${machine}/scsi0`)).length, 2);
    assert.deepEqual(
      (await deps.vault.points(machine)).map((p) => p.id),
      ['pp1', 'pp2'],
    );

    // Concurrent publishes of one point (two activity attempts) still end with one point.
    const racers = await Promise.all(
      [1, 2, 3].map(() => publishPoint(deps, publishInput(machine, 3, 'pp3', [['scsi0', image.length]]))),
    );
    assert.equal(new Set(racers.map((p) => p.disks[0]?.snapshot)).size, 1);
    // Azurite may give snapshots taken in the same millisecond the same id, so compare the ids as a set.
    assert.deepEqual(
      [
        ...new Set(
          (await snapshotsOf(`${machine}/scsi0`)).filter((s) => s.point === 'pp3').map((s) => s.snapshot),
        ),
      ],
      [racers[0]?.disks[0]?.snapshot],
      'the losers removed the snapshots they took',
    );
    assert.deepEqual(
      (await deps.vault.points(machine)).map((p) => p.id),
      ['pp1', 'pp2', 'pp3'],
    );

    // The same id for another cycle is a conflict, not a silent overwrite.
    await assert.rejects(
      publishPoint(deps, publishInput(machine, 9, 'pp1', [['scsi0', image.length]])),
      (err) => {
        assert.equal(failureOf(err).type, POINT_ID_CONFLICT);
        return true;
      },
    );
    await assert.rejects(
      publishPoint(deps, publishInput(machine, 4, 'pp4', [['nodisk', 512]])),
      /does not exist/,
    );
  });
});

describe('replica disks and cache cleanup', () => {
  test('ensureReplicaDisk creates, grows and refuses to shrink; deleteReplica removes blobs and snapshots', async () => {
    const machine = 'vm-r1';
    const created = await ensureReplicaDisk(deps, { machine, diskId: 'd0', sizeBytes: 1000 });
    assert.deepEqual(created, { blob: 'vm-r1/d0', existed: false, sizeBytes: 1024, appliedCycle: 0 });
    assert.deepEqual(await ensureReplicaDisk(deps, { machine, diskId: 'd0', sizeBytes: 1024 }), {
      blob: 'vm-r1/d0',
      existed: true,
      sizeBytes: 1024,
      appliedCycle: 0,
    });
    assert.equal(
      (await ensureReplicaDisk(deps, { machine, diskId: 'd0', sizeBytes: 1 * MiB })).sizeBytes,
      1 * MiB,
    );
    assert.equal((await replicaBlobClient(blobService, 'vm-r1/d0').getProperties()).contentLength, 1 * MiB);
    await assert.rejects(ensureReplicaDisk(deps, { machine, diskId: 'd0', sizeBytes: 512 * KiB }), (err) => {
      const failure = failureOf(err);
      assert.equal(failure.type, DISK_SHRUNK);
      assert.equal(failure.nonRetryable, true);
      assert.match(
        failure.message,
        /disk d0 of machine vm-r1 is 524288 bytes but its replica .* holds 1048576/,
      );
      assert.match(
        failure.message,
        /Grow the disk back .* or remove the disk from protection and add it again/,
      );
      return true;
    });
    assert.equal(
      (await replicaBlobClient(blobService, 'vm-r1/d0').getProperties()).contentLength,
      1 * MiB,
      'not shrunk',
    );

    await ensureReplicaDisk(deps, { machine, diskId: 'd1', sizeBytes: 4096 });
    await ensureReplicaDisk(deps, { machine: 'vm-r10', diskId: 'd0', sizeBytes: 4096 });
    await replicaBlobClient(blobService, 'vm-r1/d0').createSnapshot();
    assert.deepEqual(await deleteReplica(deps, machine), ['vm-r1/d0', 'vm-r1/d1']);
    assert.equal((await snapshotsOf('vm-r1/d0')).length, 0, 'snapshots deleted with their blob');
    assert.equal(
      await replicaBlobClient(blobService, 'vm-r10/d0').exists(),
      true,
      'a machine with a longer name is untouched',
    );
    assert.deepEqual(await deleteReplica(deps, machine), []);
  });

  test('deleteCycleSegments deletes the manifest and every segment of that cycle only', async () => {
    const machine = 'vm-g';
    const { image, extents } = firstImage();
    const up = await uploadCycle(machine, 'scsi0', 5, image, extents);
    await uploadCycle(machine, 'scsi0', 6, image, [{ offset: 0, length: 64 * KiB }]);
    assert.ok(await readCycleManifest(blobService, { machine, diskId: 'scsi0', cycle: 5 }));
    assert.deepEqual(await deleteCycleSegments(deps, { machine, diskId: 'scsi0', cycle: 5 }), {
      deleted: up.segments.length + 1,
    });
    assert.equal(await readCycleManifest(blobService, { machine, diskId: 'scsi0', cycle: 5 }), undefined);
    const cache = blobService.getContainerClient(CONTAINERS.cache);
    const left: string[] = [];
    for await (const item of cache.listBlobsFlat({ prefix: `${machine}/` })) left.push(item.name);
    assert.deepEqual(left, [
      segmentBlobName(machine, 'scsi0', 6, 0),
      cycleManifestBlobName(machine, 'scsi0', 6),
    ]);
    assert.deepEqual(await deleteCycleSegments(deps, { machine, diskId: 'scsi0', cycle: 5 }), { deleted: 0 });
  });
});

describe('retention', () => {
  const policy: ReplicationPolicy = {
    name: 'test',
    rpoThresholdSeconds: 900,
    crashPointSeconds: 300,
    appPointSeconds: 3600,
    retentionHours: 24,
    keepAllMinutes: 60,
  };
  const point = (id: string, instant: string, kind: 'crash' | 'app' = 'crash', cycle = 1): RecoveryPoint => ({
    id,
    machine: 'vm',
    cycle,
    instant,
    kind,
    disks: [],
    createdAt: instant,
  });
  const ids = (points: RecoveryPoint[]): string[] => points.map((p) => p.id);

  test('pointsToPrune keeps recent points, the newest (and newest app) point of each hour, drops the expired', () => {
    const now = new Date('2025-01-02T12:30:00Z');
    const points = [
      point('a', '2025-01-02T12:25:00Z'), // 5 min: keep-all window
      point('b', '2025-01-02T11:40:00Z'), // 50 min: keep-all window, newest of hour 11
      point('c', '2025-01-02T11:20:00Z'), // 70 min: hour 11 already has b
      point('d', '2025-01-02T10:05:00Z', 'app'), // newest app-consistent point of hour 10
      point('e', '2025-01-02T10:10:00Z'), // neither
      point('f', '2025-01-02T10:50:00Z'), // newest of hour 10
      point('g', '2025-01-02T09:15:00Z', 'app'),
      point('h', '2025-01-02T09:45:00Z', 'app'), // newest, and newest app, of hour 9
      point('i', '2025-01-01T13:00:00Z'), // 23.5 h: alone in its hour
      point('j', '2025-01-01T12:10:00Z'), // 24 h 20 min: expired
      point('k', '2025-01-01T11:00:00Z', 'app'), // expired, app-consistent or not
    ];
    // Input order does not matter; the answer is oldest first.
    const shuffled = [...points].reverse();
    assert.deepEqual(ids(pointsToPrune(shuffled, policy, now)), ['k', 'j', 'g', 'e', 'c']);
    // Pinned points stay.
    assert.deepEqual(ids(pointsToPrune(points, policy, now, { pinned: ['e', 'k'] })), ['j', 'g', 'c']);
    // Half an hour later, a and b leave the keep-all window: b is still the newest of hour 11.
    assert.deepEqual(ids(pointsToPrune(points, policy, new Date('2025-01-02T13:00:00Z'))), [
      'k',
      'j',
      'g',
      'e',
      'c',
    ]);
    // keepAllMinutes 0: thinning applies right away; hour 12 has only a.
    assert.deepEqual(ids(pointsToPrune(points, { ...policy, keepAllMinutes: 0 }, now)), [
      'k',
      'j',
      'g',
      'e',
      'c',
    ]);
  });

  test('pointsToPrune never drops the newest point, and keeps what it cannot date', () => {
    const now = new Date('2025-03-01T00:00:00Z');
    const old = [
      point('x1', '2025-01-01T00:00:00Z'),
      point('x2', '2025-01-01T00:10:00Z'),
      point('x3', '2025-01-01T00:10:00Z', 'crash', 7), // same instant, later cycle: the newest
      point('bad', 'not a date'),
    ];
    assert.deepEqual(ids(pointsToPrune(old, policy, now)), ['x1', 'x2']);
    assert.deepEqual(pointsToPrune([], policy, now), []);
    assert.deepEqual(ids(pointsToPrune([point('only', '2020-01-01T00:00:00Z')], policy, now)), []);
    // Within the keep-all window nothing goes, however many points there are.
    const burst = Array.from({ length: 30 }, (_, i) =>
      point(`b${i}`, new Date(now.getTime() - i * 60_000).toISOString()),
    );
    assert.deepEqual(pointsToPrune(burst, policy, now), []);
    assert.throws(() => pointsToPrune(old, policy, new Date('nope')), /not a valid date/);
  });

  test('pruneRetention deletes the pruned points snapshots and catalog entries, and keeps the rest usable', async () => {
    const machine = 'vm-t';
    const { image, extents } = firstImage();
    await uploadCycle(machine, 'scsi0', 1, image, extents);
    await applyCycle(deps, { machine, diskId: 'scsi0', cycle: 1 });
    const instants = [
      '2025-05-01T08:10:00Z',
      '2025-05-01T08:40:00Z',
      '2025-05-01T09:20:00Z',
      '2025-05-01T09:50:00Z',
      '2025-05-01T10:25:00Z',
    ];
    const published: RecoveryPoint[] = [];
    for (const [i, instant] of instants.entries()) {
      published.push(
        await publishPoint(
          deps,
          publishInput(machine, i + 1, `pt${i + 1}`, [['scsi0', image.length]], instant),
        ),
      );
    }
    const now = '2025-05-01T10:30:00Z'; // as a workflow payload carries a Date
    const dropped = await pruneRetention(deps, {
      machine,
      policy: { keepAllMinutes: 30, retentionHours: 24 },
      now,
    });
    assert.deepEqual(dropped, ['pt1', 'pt3']);
    assert.deepEqual(
      (await deps.vault.points(machine)).map((p) => p.id),
      ['pt2', 'pt4', 'pt5'],
    );
    const left = await snapshotsOf(`${machine}/scsi0`);
    assert.deepEqual(left.map((s) => s.point).sort(), ['pt2', 'pt4', 'pt5']);
    for (const gone of [published[0]!, published[2]!]) {
      assert.equal(
        await replicaBlobClient(blobService, gone.disks[0]!.blob)
          .withSnapshot(gone.disks[0]!.snapshot)
          .exists(),
        false,
      );
      await assert.rejects(exportToBuffer(gone, 'scsi0'), /no longer exists/);
    }
    assert.ok(
      (await exportToBuffer(published[1]!, 'scsi0')).image.equals(image),
      'a kept point still exports',
    );
    assert.deepEqual(
      await pruneRetention(deps, { machine, policy: { keepAllMinutes: 30, retentionHours: 24 }, now }),
      [],
    );
    // Much later every point but the newest has expired.
    const later = await pruneRetention(deps, { machine, policy, now: new Date('2025-06-01T00:00:00Z') });
    assert.deepEqual(later, ['pt2', 'pt4']);
    assert.deepEqual(
      (await snapshotsOf(`${machine}/scsi0`)).map((s) => s.point),
      ['pt5'],
    );
  });
});

describe('replica checksums', () => {
  test('checksums of a known image match SHA-256 of each block, holes and a short last block included', async () => {
    const machine = 'vm-k';
    const size = 3 * MiB + 1024; // the last 256 KiB block is 1 KiB long
    const image = Buffer.alloc(size);
    randomBytes(300 * KiB).copy(image, 100 * KiB); // straddles blocks 0 and 1
    compressible(256 * KiB, 3).copy(image, 1 * MiB); // exactly block 4
    randomBytes(1024).copy(image, 3 * MiB); // the short last block
    const extents = [
      { offset: 0, length: 512 * KiB }, // includes written zeros around the data
      { offset: 1 * MiB, length: 256 * KiB },
      { offset: 2 * MiB, length: 512 * KiB }, // written zeros only
      { offset: 3 * MiB, length: 1024 },
    ];
    await uploadCycle(machine, 'scsi0', 1, image, extents);
    await applyCycle(deps, { machine, diskId: 'scsi0', cycle: 1 });
    // The same disk with its short last block a hole: that block's checksum is of 1 KiB of zeros.
    const holeTail = Buffer.from(image).fill(0, 3 * MiB);
    await uploadCycle(machine, 'scsi1', 1, holeTail, extents.slice(0, -1), { sizeBytes: size });
    await applyCycle(deps, { machine, diskId: 'scsi1', cycle: 1 });

    const cases = [256 * KiB, 64 * KiB, 5 * 512].flatMap((blockBytes) => [
      { diskId: 'scsi0', image, blockBytes },
      { diskId: 'scsi1', image: holeTail, blockBytes },
    ]);
    for (const { diskId, image, blockBytes } of cases) {
      const result = await replicaChecksums(deps, { machine, diskId, blockBytes });
      const blocks = Math.ceil(size / blockBytes);
      assert.deepEqual(result, {
        blob: `${machine}/${diskId}/checksums-${blockBytes}.bin`,
        blocks,
        blockBytes,
        sizeBytes: size,
      });
      const stored = await blobService
        .getContainerClient(CONTAINERS.cache)
        .getBlobClient(result.blob)
        .downloadToBuffer();
      const expected = Buffer.concat(
        Array.from({ length: blocks }, (_, i) =>
          createHash('sha256')
            .update(image.subarray(i * blockBytes, Math.min(size, (i + 1) * blockBytes)))
            .digest()
            .subarray(0, 16),
        ),
      );
      assert.equal(stored.length, 32 + blocks * 16);
      assert.ok(stored.subarray(32).equals(expected), `checksums of ${diskId} at ${blockBytes}-byte blocks`);
      const list = parseChecksums(stored);
      assert.equal(list.blocks, blocks);
      assert.ok(checksumAt(list, blocks - 1).equals(expected.subarray((blocks - 1) * 16)));
    }
    await assert.rejects(
      replicaChecksums(deps, { machine, diskId: 'scsi0', blockBytes: 1000 }),
      /multiple of 512/,
    );
    await assert.rejects(
      replicaChecksums(deps, { machine, diskId: 'nodisk', blockBytes: 4096 }),
      /has no replica/,
    );
  });
});
