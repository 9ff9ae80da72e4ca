// The cloud applier against a real Azurite (in memory, on a free port): segments encoded by the
// real block pipeline and uploaded as the process server does, applied to replica page blobs,
// published as snapshots, exported and compared with the source bytes. Publishing, replica disks,
// retention and checksums: applier-points.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  applyCycle,
  CYCLE_NOT_UPLOADED,
  SEGMENT_CORRUPT,
} from '../../activities/cloud-applier/apply-replica';
import type { SegmentCorruptDetails } from '../../activities/cloud-applier/apply-replica';
import { exportPoint } from '../../activities/cloud-applier/export-point';
import { publishPoint } from '../../activities/cloud-applier/publish-point';
import { replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
import { segmentBlobName } from '../../lib/segments/segment-format';
import type { Extent } from '../../lib/segments/segment-format';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { Uploaded } from '../helpers/applier-fixture';
import {
  KiB,
  MiB,
  tmp,
  blobService,
  deps,
  compressible,
  uploadCycle,
  putSegment,
  readReplica,
  exportToBuffer,
  publishInput,
  failureOf,
  extentBytes,
  firstImage,
  useApplierStorage,
} from '../helpers/applier-fixture';

useApplierStorage();

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
