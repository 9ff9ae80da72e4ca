// Names of everything OSR keeps in the cache container (osr-cache), in one place:
//
//   <machine>/<disk>/<cycle:16>/<index:10>.seg   segments of one cycle, uploaded first
//   <machine>/<disk>/<cycle:16>/manifest.json    written LAST: the cycle is complete
//   <machine>/<disk>/<cycle:16>/plan.json        the cycle's extent list (same segments on retry)
//   <machine>/<disk>/checksums-<block>.bin       a replica's block checksums, for a resync
//
// Names are deterministic, so a retried upload overwrites the same blob instead of leaving a
// second copy; numbers are zero-padded, so names list in apply order.
import { assertId, padNumber } from './segment-header';

// Widths fit Number.MAX_SAFE_INTEGER (16 digits) and 2^32 segments per cycle, so names sort by number.
const CYCLE_DIGITS = 16;
const INDEX_DIGITS = 10;

export const MANIFEST_FILE = 'manifest.json';
export const PLAN_FILE = 'plan.json';

/** Blob name of a segment in the cache container. */
export function segmentBlobName(machine: string, diskId: string, cycle: number, index: number): string {
  return `${segmentCyclePrefix(machine, diskId, cycle)}${padNumber('index', index, INDEX_DIGITS)}.seg`;
}

/** Prefix shared by every blob of one disk and cycle: list it to find what a cycle uploaded. */
export function segmentCyclePrefix(machine: string, diskId: string, cycle: number): string {
  return `${diskCachePrefix(machine, diskId)}${padNumber('cycle', cycle, CYCLE_DIGITS)}/`;
}

/** Prefix of everything one disk has in the cache: its cycles and its resync checksums. */
export function diskCachePrefix(machine: string, diskId: string): string {
  assertId('machine', machine);
  assertId('diskId', diskId);
  return `${machine}/${diskId}/`;
}

/** The manifest that says a cycle's upload is complete. */
export function cycleManifestBlobName(machine: string, diskId: string, cycle: number): string {
  return `${segmentCyclePrefix(machine, diskId, cycle)}${MANIFEST_FILE}`;
}

/** The extent list of a cycle, stored on its first transfer call. */
export function cyclePlanBlobName(machine: string, diskId: string, cycle: number): string {
  return `${segmentCyclePrefix(machine, diskId, cycle)}${PLAN_FILE}`;
}

/** A replica's checksum list for blocks of `blockBytes`. */
export function checksumsBlobName(machine: string, diskId: string, blockBytes: number): string {
  return `${diskCachePrefix(machine, diskId)}checksums-${blockBytes}.bin`;
}
