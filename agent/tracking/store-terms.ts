// What the agent reports of its point store's room (store-space.ts), as the wire carries it
// (protocol.ts re-exports it). Pure: types only.

/**
 * The room of the agent's point store, sent at hello and with each heartbeat: the filesystem
 * holding the tracking folder (statfs), where each point's copy-on-write store grows. An agent
 * older than this sends none. The process server judges it (lib/agents/store-alerts.ts).
 */
export interface StoreReport {
  /** The tracking folder, e.g. /var/lib/osr-agent. */
  dir: string;
  /** Available to the agent (statfs bavail), and the filesystem's size; 0: unknown (a ramfs). */
  freeBytes: number;
  sizeBytes: number;
  /** The most room one of the recent points' copy-on-write stores took (absent: none released yet). */
  largestPointBytes?: number;
  /** Points given up since the last one kept because their store could not grow (a full filesystem). */
  overflow?: { since: string; at: string; count: number; message: string };
}
