// Reading failures in workflow code: what an operator should read, the application type, and the
// details the failure types that workflows act on carry.
import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import { FAILURE } from '../../shared/failures';
import type { StorageUnavailableDetails } from '../../shared/storage-faults';

/** The message worth showing: an activity's own failure rather than Temporal's wrapper. */
export function messageOf(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** The ApplicationFailure type of an error or of an activity's failure. */
export function failureType(err: unknown): string | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined;
}

/** The indices of the segments a SegmentCorrupt failure names; undefined for any other failure. */
export function corruptIndices(err: unknown): number[] | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure && cause.type === FAILURE.SegmentCorrupt) {
    const details = cause.details?.[0] as { indices?: number[] } | undefined;
    return details?.indices;
  }
  return undefined;
}

/** What a StorageUnavailable failure says; undefined for any other failure. */
export function storageUnavailable(err: unknown): StorageUnavailableDetails | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure && cause.type === FAILURE.StorageUnavailable) {
    return (cause.details?.[0] as StorageUnavailableDetails | undefined) ?? { problem: 'unreachable' };
  }
  return undefined;
}
