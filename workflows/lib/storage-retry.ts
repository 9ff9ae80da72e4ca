// Storage trouble during a replication step: warnings for trouble a step survived, and the retry
// with backoff of a step that storage kept from finishing. Workflow code.
import { sleep } from '@temporalio/workflow';
import type { Alert } from '../../shared/contracts/protect-machine';
import type { StorageTrouble } from '../../shared/storage-faults';
import { messageOf, storageUnavailable } from './failures';

/** How long one step of a cycle waits for storage to come back before the cycle fails (changes kept). */
export const STORAGE_PATIENCE_MS = 10 * 60_000;
/** Backoff between tries of a step that storage kept from finishing: doubling, capped. */
export const STORAGE_BACKOFF_MS = { first: 2000, max: 60_000 };

/** What the storage helpers need from the workflow running the step. */
export interface StorageWatch {
  raise(kind: Alert['kind'], severity: Alert['severity'], message: string): void;
  /** Storage gave trouble during the cycle in progress (its alerts stay after it). */
  troubled(): void;
  /** The cycle in progress, for messages. */
  cycle(): number;
  /** Called after each backoff: RPO keeps growing while storage is away. */
  checkRpo(): void;
}

/**
 * The failure path of a storage step of a cycle (the success path is a plain `await` at the call
 * site, so a history recorded before this code replays: no extra promise hops between commands).
 * Trouble the step's requests went through and survived (retried by the storage client) raises
 * a warning naming it (noteStorageTrouble); a step that storage kept from finishing
 * (StorageUnavailable, after the client's own retries) raises a critical alert and is tried again
 * with backoff, from where a transfer got to, for up to STORAGE_PATIENCE_MS; then the cycle fails
 * and its changes go with the next one (releasePoint merges the bitmap back). Nothing is dropped.
 */
export async function retryStorage<T>(
  w: StorageWatch,
  first: unknown,
  what: string,
  step: (resumeAt?: number) => Promise<T>,
): Promise<T> {
  const began = Date.now();
  let delay = STORAGE_BACKOFF_MS.first;
  let resumeAt: number | undefined;
  let err = first;
  for (;;) {
    {
      const details = storageUnavailable(err);
      if (!details) throw err;
      w.troubled();
      const giveUp = Date.now() - began + delay > STORAGE_PATIENCE_MS;
      w.raise(
        details.problem === 'throttled' ? 'storage-throttled' : 'storage-unreachable',
        'critical',
        `${messageOf(err)}; ${giveUp ? `gave up after ${Math.round((Date.now() - began) / 1000)} s: this cycle fails and its changes go with the next one` : `trying again in ${delay / 1000} s`}. Nothing is lost: unsent changes stay at the source.`,
      );
      if (giveUp) throw err;
      if (details.nextIndex !== undefined) resumeAt = details.nextIndex;
      await sleep(delay);
      delay = Math.min(delay * 2, STORAGE_BACKOFF_MS.max);
      w.checkRpo();
    }
    try {
      const result = await step(resumeAt);
      noteStorageTrouble(w, what, (result as { storage?: StorageTrouble } | undefined)?.storage);
      return result;
    } catch (next) {
      err = next;
    }
  }
}

/** Warnings for storage trouble a step went through and survived (its requests were retried). */
export function noteStorageTrouble(w: StorageWatch, what: string, t: StorageTrouble | undefined): void {
  if (!t || t.throttled + t.timeouts + t.unreachable === 0) return;
  w.troubled();
  const last = t.last ? ` (last: ${t.last})` : '';
  if (t.throttled > 0) {
    w.raise(
      'storage-throttled',
      'warning',
      `${what} (cycle ${w.cycle()}): the storage endpoint answered 503 Server Busy / 500 to ${t.throttled} request tries${last}; they were retried with backoff and went through`,
    );
  }
  if (t.timeouts + t.unreachable > 0) {
    w.raise(
      'storage-unreachable',
      'warning',
      `${what} (cycle ${w.cycle()}): ${t.timeouts} request tries got no answer in time and ${t.unreachable} could not reach the storage endpoint${last}; they were retried with backoff and went through`,
    );
  }
}
