// The terms of a write hold (hold.ts) that the wire protocol names too (protocol.ts re-exports
// them): pure, so the process server's side imports no device-mapper code.

/**
 * The longest an agent holds its machine's writes for a consistency-group cut: then it lets them
 * go by itself, so a process server or workflow lost mid-cut never stops the machine for longer
 * than the group waits for a freeze (workflows/consistency-group/cut.ts, FREEZE_TIMEOUT).
 */
export const HOLD_LIMIT_MS = 60_000;

export interface HoldResult {
  disks: string[];
  /** When the first disk's writes were held (the machine's side of the group point's instant). */
  heldAt: string;
}

/** `held`: the writes stayed held from the hold until this unhold; `expired`: the limit let them go. */
export interface HoldOutcome {
  held: boolean;
  heldMs: number;
  expired: boolean;
}

/** A planned failover's stop (stop.ts): every tracked disk suspended until `resume-writes`. */
export interface StopResult {
  disks: string[];
  /** When the writes stopped: nothing the machine acknowledged after it exists. */
  stoppedAt: string;
}

/** `resumed`: the writes were stopped and go on now; `stoppedMs`: for how long. */
export interface ResumeResult {
  resumed: boolean;
  stoppedMs: number;
}
