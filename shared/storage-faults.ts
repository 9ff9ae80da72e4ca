// What storage did to a step's requests, as activities report it to workflows: pure types, so
// workflow code can read them (the counting lives in lib/azure/storage-health.ts).

/** Failure type of a step that storage throttling or time-outs kept from finishing. */
export const STORAGE_UNAVAILABLE = 'StorageUnavailable';

export interface StorageTrouble {
  /** Tries answered 503 (Server Busy) or 500: the account throttles or is overloaded. */
  throttled: number;
  /** Tries with no answer within the per-try time-out. */
  timeouts: number;
  /** Tries that could not reach the endpoint (refused, reset, DNS…). */
  unreachable: number;
  /** The last problem seen, for alert messages. */
  last?: string;
}

/** details[0] of a StorageUnavailable failure. */
export interface StorageUnavailableDetails {
  problem: 'throttled' | 'unreachable';
  /** What the step's requests went through before it gave up. */
  trouble?: StorageTrouble;
  /** transferDisk: every segment below this index is stored; a new attempt may start there. */
  nextIndex?: number;
}
