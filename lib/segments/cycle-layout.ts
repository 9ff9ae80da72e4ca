// What one cycle of one disk looks like in the cache container, shared by the process server
// (which writes it) and the cloud applier (which reads it):
//
//   osr-cache/<segmentBlobName(M, D, C, i)>            for i = 0 .. segments-1, uploaded first
//   osr-cache/<segmentCyclePrefix(M, D, C)>manifest.json   uploaded LAST
//
// The manifest says the upload is complete: how many segments there are and the disk's virtual size
// at the cycle's freeze. A cycle without a manifest is still being uploaded and must not be applied.
// The manifest is not encrypted: it holds no disk data, and every segment carries its own
// authenticated machine, disk, cycle and index, which the applier checks against it.
import { RestError } from '@azure/storage-blob';
import { CONTAINERS, type BlobStorage } from '../azure/blob-client';
import { cycleManifestBlobName, segmentBlobName, segmentCyclePrefix } from './cache-layout';

export { MANIFEST_FILE, cycleManifestBlobName } from './cache-layout';

export interface CycleRef {
  machine: string;
  diskId: string;
  cycle: number;
}

export interface CycleManifest extends CycleRef {
  /** Segments 0 .. segments-1 make up the cycle; 0 for a disk without changes. */
  segments: number;
  /** The disk's virtual size at the cycle's freeze. */
  sizeBytes: number;
}

/** A manifest that cannot be trusted: malformed, or describing another cycle than its name says. */
export class CycleManifestError extends Error {
  override readonly name = 'CycleManifestError';
}

/** Blob names of the cycle's segments, in apply order. */
export function cycleSegmentBlobNames(manifest: CycleManifest): string[] {
  return Array.from({ length: manifest.segments }, (_, i) =>
    segmentBlobName(manifest.machine, manifest.diskId, manifest.cycle, i),
  );
}

/** Validates a manifest's fields (and, given `expected`, that it is that cycle's). */
export function checkCycleManifest(value: unknown, expected?: CycleRef): CycleManifest {
  const where = expected ? ` of ${expected.machine}/${expected.diskId} cycle ${expected.cycle}` : '';
  const bad = (what: string): never => {
    throw new CycleManifestError(`cycle manifest${where}: ${what}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad('not a JSON object');
  const m = value as Record<string, unknown>;
  const allowed = new Set(['machine', 'diskId', 'cycle', 'segments', 'sizeBytes']);
  for (const key of Object.keys(m)) if (!allowed.has(key)) bad(`unknown field ${key}`);
  if (typeof m.machine !== 'string' || typeof m.diskId !== 'string') return bad('machine or diskId missing');
  for (const key of ['cycle', 'segments', 'sizeBytes'] as const) {
    const n = m[key];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) bad(`${key} must be an integer >= 0`);
  }
  const manifest = m as unknown as CycleManifest;
  if (manifest.sizeBytes === 0) bad('sizeBytes must be > 0');
  try {
    segmentCyclePrefix(manifest.machine, manifest.diskId, manifest.cycle);
  } catch (err) {
    bad(err instanceof Error ? err.message : String(err));
  }
  if (
    expected &&
    (manifest.machine !== expected.machine ||
      manifest.diskId !== expected.diskId ||
      manifest.cycle !== expected.cycle)
  ) {
    bad(`describes ${manifest.machine}/${manifest.diskId} cycle ${manifest.cycle}`);
  }
  return {
    machine: manifest.machine,
    diskId: manifest.diskId,
    cycle: manifest.cycle,
    segments: manifest.segments,
    sizeBytes: manifest.sizeBytes,
  };
}

/**
 * Writes the manifest: call it after every segment of the cycle is uploaded. Writing the same
 * manifest again (a retried upload) is harmless.
 */
export async function writeCycleManifest(blobService: BlobStorage, manifest: CycleManifest): Promise<void> {
  const checked = checkCycleManifest(manifest);
  const body = JSON.stringify(checked);
  await blobService
    .getContainerClient(CONTAINERS.cache)
    .getBlockBlobClient(cycleManifestBlobName(checked.machine, checked.diskId, checked.cycle))
    .upload(body, Buffer.byteLength(body), { blobHTTPHeaders: { blobContentType: 'application/json' } });
}

/** The cycle's manifest; undefined while the upload is not finished (no manifest yet). */
export async function readCycleManifest(
  blobService: BlobStorage,
  ref: CycleRef,
): Promise<CycleManifest | undefined> {
  const blob = blobService
    .getContainerClient(CONTAINERS.cache)
    .getBlockBlobClient(cycleManifestBlobName(ref.machine, ref.diskId, ref.cycle));
  let bytes: Buffer;
  try {
    bytes = await blob.downloadToBuffer();
  } catch (err) {
    if (err instanceof RestError && err.statusCode === 404) return undefined;
    throw err;
  }
  if (bytes.length > 64 * 1024)
    throw new CycleManifestError(`cycle manifest ${blob.name} is ${bytes.length} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new CycleManifestError(`cycle manifest ${blob.name} is not JSON`);
  }
  return checkCycleManifest(value, ref);
}
