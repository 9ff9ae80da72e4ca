// How a data-path activity tells its workflow about storage trouble. The Azure SDK has already
// retried each request with backoff (shared/storage.ts); what is left here is:
// - the request finally went through: the activity's result carries what its requests went
//   through (`storage`: throttled answers, time-outs), so the workflow can raise an alert;
// - it did not: the error becomes a StorageUnavailable failure naming the problem, with the index
//   the transfer had reached. Callers that handle it themselves (protectMachine: alert, wait with
//   backoff, try the step again) ask for it non-retryable with `reportStorageFaults`; for everyone
//   else it stays retryable, so Temporal's own retries go on as before.
import { ApplicationFailure } from '@temporalio/common';
import { hasTrouble, storageProblem, withStorageWatch } from '../../lib/azure/storage-health';
import {
  STORAGE_UNAVAILABLE,
  type StorageTrouble,
  type StorageUnavailableDetails,
} from '../../shared/storage-faults';

export interface ReportsStorageFaults {
  /** The caller handles StorageUnavailable itself: fail it non-retryable, at once. */
  reportStorageFaults?: boolean;
}

/** The error to throw for `err`: a StorageUnavailable failure if storage caused it, else `err`. */
export function storageFailure(
  err: unknown,
  what: string,
  nextIndex?: number,
  nonRetryable = false,
): unknown {
  const problem = storageProblem(err);
  if (!problem) return err;
  const trouble = (err as { storageTrouble?: StorageTrouble }).storageTrouble;
  const details: StorageUnavailableDetails = { problem: problem.problem, trouble, nextIndex };
  return ApplicationFailure.create({
    type: STORAGE_UNAVAILABLE,
    message: `${what}: ${problem.message}`,
    nonRetryable,
    details: [details],
    cause: err instanceof Error ? err : undefined,
  });
}

/** Runs a storage step: its trouble is added to an object result, and a storage failure is named. */
export async function watchStorage<T extends object>(
  input: ReportsStorageFaults,
  what: string,
  fn: () => Promise<T>,
): Promise<T & { storage?: StorageTrouble }> {
  try {
    const { result, trouble } = await withStorageWatch(fn);
    return hasTrouble(trouble) ? { ...result, storage: trouble } : result;
  } catch (err) {
    throw storageFailure(err, what, undefined, input.reportStorageFaults === true);
  }
}

/** Runs a storage step whose result carries nothing more: only a storage failure is named. */
export async function guardStorage<T>(
  input: ReportsStorageFaults,
  what: string,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw storageFailure(err, what, undefined, input.reportStorageFaults === true);
  }
}
