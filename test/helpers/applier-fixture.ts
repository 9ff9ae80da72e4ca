// What the cloud-applier tests (applier*.test.ts) share: Azurite in memory on a free port, one
// block pipeline (it encodes as the process server and decodes as the applier), and segments
// encoded and uploaded as the process server does.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { BlobServiceClient, type PageBlobClient } from '@azure/storage-blob';
import { ApplicationFailure } from '@temporalio/common';
import { writeCycleManifest } from '../../lib/segments/cycle-layout';
import { applyCycle } from '../../activities/cloud-applier/apply-replica';
import { exportPoint } from '../../activities/cloud-applier/export-point';
import { publishPoint } from '../../activities/cloud-applier/publish-point';
import type { PublishPointInput } from '../../activities/cloud-applier/publish-point';
import type { ApplierDeps } from '../../activities/cloud-applier/replica-disk';
import { replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
import { BlockPipeline } from '../../lib/segments/block-pipeline';
import { EncryptionKey } from '../../lib/segments/keys';
import { segmentBlobName } from '../../lib/segments/segment-format';
import type { Extent } from '../../lib/segments/segment-format';
import type { RecoveryPoint } from '../../shared/replication-types';
import { startAzurite } from '../../stack/azurite';
import { stopPid } from '../../lib/process/managed-process';
import type { RunningProcess } from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';
import { azuriteConnectionString, CONTAINERS, ensureContainers } from '../../lib/azure/blob-client';
import { Vault } from '../../lib/azure/vault';

export const KiB = 1024;
export const MiB = 1024 * KiB;

export const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-applier-'));
export let azurite: RunningProcess | undefined;
export let blobService: BlobServiceClient;
export let pipeline: BlockPipeline | undefined;
export let deps: ApplierDeps;

// ---------------------------------------------------------------------------------------------
// The process server's side, as far as the applier sees it.

export function compressible(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let at = 0; at < length; ) at += out.write(`block ${seed} line ${at % 977}\n`, at);
  return out;
}

/** Cuts extents into segments of at most `segmentBytes` raw bytes each. */
export function cutIntoSegments(extents: readonly Extent[], segmentBytes: number): Extent[][] {
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

export interface Uploaded {
  /** The segments as encoded (before any tampering), index = position. */
  segments: Buffer[];
  extents: Extent[][];
}

/** Encodes the extents' bytes of `image` and uploads segments then the manifest, as the process server does. */
export async function uploadCycle(
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
        machine: machine,
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

/** One cycle of disk scsi0 (`image`, sent as `extents`) uploaded and applied, then its point published. */
export async function applyAndPublish(
  machine: string,
  cycle: number,
  pointId: string,
  image: Buffer,
  extents: Extent[],
): Promise<RecoveryPoint> {
  await uploadCycle(machine, 'scsi0', cycle, image, extents);
  await applyCycle(deps, { machine, diskId: 'scsi0', cycle });
  return publishPoint(deps, publishInput(machine, cycle, pointId, [['scsi0', image.length]]));
}

/**
 * What the applier made before replicas were VHDs: disk scsi0 as a raw page blob of the image's
 * size, written in pages of at most 4 MiB, and its point (cycle 1) published.
 */
export async function publishRawReplica(
  machine: string,
  pointId: string,
  image: Buffer,
): Promise<{ point: RecoveryPoint; replica: PageBlobClient }> {
  const size = image.length;
  const replica = replicaBlobClient(blobService, `${machine}/scsi0`);
  await replica.create(size);
  for (let at = 0; at < size; at += 4 * MiB)
    await replica.uploadPages(
      image.subarray(at, Math.min(size, at + 4 * MiB)),
      at,
      Math.min(4 * MiB, size - at),
    );
  const point = await publishPoint(deps, publishInput(machine, 1, pointId, [['scsi0', size]]));
  return { point, replica };
}

export async function putSegment(
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
export async function readReplica(machine: string, diskId: string, size: number): Promise<Buffer> {
  return replicaBlobClient(blobService, `${machine}/${diskId}`).downloadToBuffer(0, size);
}

export async function exportToBuffer(
  point: RecoveryPoint,
  diskId: string,
): Promise<{ image: Buffer; written: number }> {
  const outFile = path.join(tmp, `${point.id}-${diskId}.raw`);
  const written = await exportPoint(deps, { point, diskId, outFile });
  const image = fs.readFileSync(outFile);
  fs.rmSync(outFile);
  return { image, written };
}

export function publishInput(
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

export async function snapshotsOf(blob: string): Promise<{ snapshot: string; point?: string }[]> {
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

export function failureOf(err: unknown): ApplicationFailure {
  assert.ok(err instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(err)}`);
  return err;
}

export const extentBytes = (extents: readonly Extent[]): number => extents.reduce((n, e) => n + e.length, 0);

/**
 * A 6 MiB + 1.5 KiB disk mixing random data, zeros that are written (sent as zero extents),
 * compressible data and holes (never written, not in the extents).
 */
export function firstImage(): { image: Buffer; extents: Extent[] } {
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

/** Azurite on a free port and one block pipeline for the file's tests; stopped after them. */
export function useApplierStorage(): void {
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
}
