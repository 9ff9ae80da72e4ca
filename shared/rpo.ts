// The RPO a point leaves: whole seconds from its instant to now, never negative. One rule for the
// workflows (status, search attributes, alerts), the health rules and the control plane.

/** Seconds from `instant` (an ISO time) to `nowMs`, or undefined without a point yet. */
export function rpoSecondsAt(instant: string | undefined, nowMs: number): number | undefined {
  return instant ? Math.max(0, Math.round((nowMs - Date.parse(instant)) / 1000)) : undefined;
}
