// Recovery points: their ids and the RPO they leave.
import { rpoSecondsAt } from '../../shared/rpo';

/** Seconds since `instant` (an ISO time), or undefined without a point yet. */
export function rpoSecondsSince(instant: string | undefined): number | undefined {
  return rpoSecondsAt(instant, Date.now());
}

/** A point id: the instant, compact and sortable by time, then a suffix unique per cycle (`c7`, `g3`). */
export function pointId(instant: string, suffix: string): string {
  return `${instant.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${suffix}`;
}
