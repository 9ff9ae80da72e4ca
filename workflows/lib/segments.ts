// What forward (protectMachine) and reverse (reprotect) replication share about moving a disk's
// segments: slice size, resync block size, and how corrupt segments are sent again. The loops
// themselves stay inline in each syncDisk: an extra await between commands would reorder the
// commands of parallel disks and break the replay of recorded histories.
import type { FrozenPoint, TransferMode } from '../../shared/replication-types';
import { corruptIndices } from './failures';

/** Segments per transfer activity call: progress shows after each slice. */
export const SLICE_SEGMENTS = 64;
/** Block size of resync checksums: the dirty-bitmap granularity. */
export const RESYNC_BLOCK_BYTES = 64 * 1024;
/** How many times segments that failed verification are sent again before the cycle fails. */
export const MAX_CORRUPT_RESENDS = 3;

/** The transfer of exactly the segments that failed verification, from the same plan. */
export function resendRequest(
  frozen: FrozenPoint,
  diskId: string,
  mode: TransferMode,
  corrupt: number[],
  checksumsBlob: string | undefined,
) {
  return {
    point: frozen,
    diskId,
    mode,
    fromIndex: 0,
    maxSegments: corrupt.length,
    onlySegments: corrupt,
    checksumsBlob,
  };
}

/**
 * The segments to send again after a failed apply, or undefined when the failure is not about
 * corrupt segments or the resends are used up (the caller rethrows).
 */
export function segmentsToResend(err: unknown, attempt: number): number[] | undefined {
  const corrupt = corruptIndices(err);
  return corrupt && attempt < MAX_CORRUPT_RESENDS ? corrupt : undefined;
}
