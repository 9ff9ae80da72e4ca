// The cloud applier's points and replicas against a real Azurite (in memory, on a free port):
// publishing points, replica disks and cache cleanup, retention, replica checksums. Applying
// cycles and verifying segments: applier.test.ts.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { applyCycle } from '../../activities/cloud-applier/apply-replica';
import { deleteCycleSegments } from '../../lib/segments/cycle-cleanup';
import { cycleManifestBlobName, readCycleManifest } from '../../lib/segments/cycle-layout';
import { POINT_ID_CONFLICT, publishPoint } from '../../activities/cloud-applier/publish-point';
import { replicaChecksums } from '../../activities/cloud-applier/replica-checksums';
import { checksumAt, parseChecksums } from '../../lib/segments/checksums';
import {
  DISK_SHRUNK,
  deleteReplica,
  ensureReplicaDisk,
  replicaBlobClient,
} from '../../activities/cloud-applier/replica-disk';
import { pointsToPrune, pruneRetention } from '../../activities/cloud-applier/retention';
import { segmentBlobName } from '../../lib/segments/segment-format';
import { checksumsBlobName, cyclePlanBlobName } from '../../lib/segments/cache-layout';
import type { RecoveryPoint, ReplicationPolicy } from '../../shared/replication-types';
import { CONTAINERS } from '../../lib/azure/blob-client';
import {
  KiB,
  MiB,
  blobService,
  deps,
  compressible,
  uploadCycle,
  exportToBuffer,
  publishInput,
  snapshotsOf,
  failureOf,
  firstImage,
  useApplierStorage,
} from '../helpers/applier-fixture';

useApplierStorage();

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
    // The blob is a fixed VHD: the 1 MiB data area, then the 512-byte footer (applier-vhd.test.ts).
    assert.equal(
      (await replicaBlobClient(blobService, 'vm-r1/d0').getProperties()).contentLength,
      1 * MiB + 512,
    );
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
      1 * MiB + 512,
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

  test('deleteCycleSegments deletes that cycle and the earlier ones a failure left; later cycles and checksums stay', async () => {
    const machine = 'vm-g';
    const { image, extents } = firstImage();
    const cache = blobService.getContainerClient(CONTAINERS.cache);
    // Cycle 4 failed mid-transfer: its plan and a segment, no manifest.
    const failed = await uploadCycle(machine, 'scsi0', 4, image, extents, { manifest: false });
    const plan = '{"mode":"delta","sizeBytes":4194304,"extents":[]}';
    await cache.getBlockBlobClient(cyclePlanBlobName(machine, 'scsi0', 4)).upload(plan, plan.length);
    const up = await uploadCycle(machine, 'scsi0', 5, image, extents);
    await uploadCycle(machine, 'scsi0', 6, image, [{ offset: 0, length: 64 * KiB }]);
    await cache.getBlockBlobClient(checksumsBlobName(machine, 'scsi0', 64 * KiB)).upload('x', 1);
    // Another disk's older cycle is not this disk's to delete.
    await uploadCycle(machine, 'scsi1', 3, image, [{ offset: 0, length: 64 * KiB }]);
    assert.ok(await readCycleManifest(blobService, { machine, diskId: 'scsi0', cycle: 5 }));
    assert.deepEqual(await deleteCycleSegments(deps, { machine, diskId: 'scsi0', cycle: 5 }), {
      deleted: failed.segments.length + 1 + up.segments.length + 1,
    });
    assert.equal(await readCycleManifest(blobService, { machine, diskId: 'scsi0', cycle: 5 }), undefined);
    const left: string[] = [];
    for await (const item of cache.listBlobsFlat({ prefix: `${machine}/` })) left.push(item.name);
    assert.deepEqual(left, [
      segmentBlobName(machine, 'scsi0', 6, 0),
      cycleManifestBlobName(machine, 'scsi0', 6),
      checksumsBlobName(machine, 'scsi0', 64 * KiB),
      segmentBlobName(machine, 'scsi1', 3, 0),
      cycleManifestBlobName(machine, 'scsi1', 3),
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
