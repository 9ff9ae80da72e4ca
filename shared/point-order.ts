// The order of a machine's recovery points, and the instant a point is labelled with. A point's
// place must not depend on the primary host's clock, which can run ahead or behind and be set
// right later: points order by their protection and the cycle's sequence number in it, and their
// instant is put on Temporal's clock (the workflow time around the freeze).
import type { RecoveryPoint } from './replication-types';

/** A primary clock further than this from Temporal's raises the clock-skew alert. */
export const CLOCK_SKEW_ALERT_MS = 30_000;

/** What ordering reads of a point (a catalog summary has no more). */
export type OrderedPoint = Pick<RecoveryPoint, 'cycle' | 'instant' | 'protection'> & { createdAt?: string };

/**
 * Oldest first. Points cut before point-order (no `protection`) come first, in the order the
 * recovery site recorded them (`createdAt`, the cloud applier's clock, not the primary's); then by
 * protection (a later protection of the same name starts after the earlier one ended) and cycle.
 */
export function comparePoints(a: OrderedPoint, b: OrderedPoint): number {
  if (a.protection === undefined || b.protection === undefined) {
    if (a.protection !== b.protection) return a.protection === undefined ? -1 : 1;
    return recordedAt(a) - recordedAt(b) || a.cycle - b.cycle;
  }
  if (a.protection !== b.protection) return a.protection < b.protection ? -1 : 1;
  return a.cycle - b.cycle;
}

/** A sorted copy, oldest first. */
export function orderPoints<P extends OrderedPoint>(points: readonly P[]): P[] {
  return [...points].sort(comparePoints);
}

/**
 * Instants (ms) of points in order that never go backwards: each is its own instant or the next
 * point's, whichever is earlier (a point labelled ahead by a skewed clock before point-order does
 * not claim to be newer than the point cut after it). NaN for an instant that cannot be read.
 */
export function monotonicInstants(ordered: readonly OrderedPoint[]): number[] {
  const out = new Array<number>(ordered.length);
  let next = Infinity;
  for (let i = ordered.length - 1; i >= 0; i--) {
    const own = Date.parse((ordered[i] as OrderedPoint).instant);
    out[i] = Number.isNaN(own) ? NaN : Math.min(own, next);
    if (!Number.isNaN(own)) next = out[i] as number;
  }
  return out;
}

/** The newest of points in order whose (monotonic) instant is at or before `atMs`. */
export function pointAtOrBefore<P extends OrderedPoint>(ordered: readonly P[], atMs: number): P | undefined {
  const instants = monotonicInstants(ordered);
  for (let i = ordered.length - 1; i >= 0; i--) if ((instants[i] as number) <= atMs) return ordered[i];
  return undefined;
}

/** Where a point's instant goes on Temporal's clock, and how far the primary's clock is off. */
export interface PlacedInstant {
  instant: string;
  /** How far the primary's reading lies outside Temporal's window (+ ahead, - behind, 0 inside). */
  skewMs: number;
}

/**
 * The primary's reading at the freeze when it falls between Temporal's times before and after the
 * freeze (the clocks agree: it is the most exact); else Temporal's time after the freeze, which is
 * never before the true freeze, so the point holds nothing written after its instant.
 */
export function placeInstant(sourceInstant: string, beforeMs: number, afterMs: number): PlacedInstant {
  const source = Date.parse(sourceInstant);
  if (Number.isNaN(source)) return { instant: new Date(afterMs).toISOString(), skewMs: 0 };
  if (source >= beforeMs && source <= afterMs) return { instant: new Date(source).toISOString(), skewMs: 0 };
  const skewMs = source > afterMs ? source - afterMs : source - beforeMs;
  return { instant: new Date(afterMs).toISOString(), skewMs };
}

function recordedAt(p: OrderedPoint): number {
  return Date.parse(p.createdAt ?? '') || Date.parse(p.instant) || 0;
}
