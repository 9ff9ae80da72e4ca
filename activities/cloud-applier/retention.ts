// Retention: which recovery points to drop, and dropping them.
//
// By age (now - instant; instants made monotonic along the points' order, shared/point-order.ts):
//   younger than keepAllMinutes              kept, all of them
//   up to retentionHours                     per clock hour (UTC): the newest point, and the newest
//                                            app-consistent point, are kept; the others dropped
//   older than retentionHours                dropped
// The newest point overall (the last in order: highest protection and cycle, never by a clock)
// is never dropped, whatever its age (a machine whose replication stopped keeps its last image),
// and neither is a pinned one (e.g. used by a running failover).
// A point whose instant cannot be read is kept: nothing is deleted on a guess.
import type { RecoveryPoint, ReplicationPolicy } from '../../shared/replication-types';
import { Vault, type PointSummary } from '../../lib/azure/vault';
import { monotonicInstants, orderPoints } from '../../shared/point-order';
import type { ApplierDeps } from './replica-disk';
import { forEachLimited, isNotFound, replicaBlobClient } from './replica-disk';

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;

export type RetentionPolicy = Pick<ReplicationPolicy, 'keepAllMinutes' | 'retentionHours'>;

export interface PruneOptions {
  /** Ids of points that must stay whatever their age. */
  pinned?: Iterable<string>;
}

/** The points the policy drops at `now`, oldest first. Pure. */
export function pointsToPrune<P extends PointSummary>(
  points: readonly P[],
  policy: RetentionPolicy,
  now: Date,
  options: PruneOptions = {},
): P[] {
  const nowMs = now.getTime();
  if (Number.isNaN(nowMs)) throw new RangeError('pointsToPrune: now is not a valid date');
  const keepAllMs = policy.keepAllMinutes * MINUTE_MS;
  const retentionMs = policy.retentionHours * HOUR_MS;
  const pinned = new Set(options.pinned ?? []);

  const ordered = orderPoints(points);
  const instants = monotonicInstants(ordered);
  const dated = ordered
    .map((point, i) => ({ point, at: instants[i] as number }))
    .filter((p) => !Number.isNaN(p.at));

  const keep = new Set<P>();
  const newest = ordered[ordered.length - 1];
  if (newest) keep.add(newest);
  // Newest point, and newest app-consistent point, of each clock hour (later entries overwrite).
  const newestOfHour = new Map<number, P>();
  const newestAppOfHour = new Map<number, P>();
  for (const { point, at } of dated) {
    const hour = Math.floor(at / HOUR_MS);
    newestOfHour.set(hour, point);
    if (point.kind === 'app') newestAppOfHour.set(hour, point);
  }
  const drop: P[] = [];
  for (const { point, at } of dated) {
    if (keep.has(point) || pinned.has(point.id)) continue;
    const age = nowMs - at;
    if (age < keepAllMs) continue;
    if (age <= retentionMs) {
      const hour = Math.floor(at / HOUR_MS);
      if (newestOfHour.get(hour) === point || newestAppOfHour.get(hour) === point) continue;
    }
    drop.push(point);
  }
  return drop;
}

export interface PruneRetentionInput {
  machine: string;
  policy: RetentionPolicy;
  /** A Date, or its ISO string (what a Date becomes in a workflow payload). */
  now: Date | string;
  pinned?: string[];
}

/**
 * Drops the points `pointsToPrune` selects: each disk's snapshot first, then the catalog entry,
 * so a crash in between leaves a catalog entry that the next run drops again, never an orphan
 * snapshot nobody knows about. Returns the dropped point ids, oldest first.
 */
export async function pruneRetention(
  deps: Pick<ApplierDeps, 'blobService' | 'vault'>,
  input: PruneRetentionInput,
): Promise<string[]> {
  const now = typeof input.now === 'string' ? new Date(input.now) : input.now;
  const summaries = await deps.vault.pointSummaries(input.machine);
  const drop = pointsToPrune(summaries, input.policy, now, { pinned: input.pinned });
  const dropped: string[] = [];
  for (const summary of drop) {
    // Only a dropped point's document is read: its disks name the snapshots to delete.
    const point = (await deps.vault.read<RecoveryPoint>(Vault.pointDoc(input.machine, summary.id)))?.value;
    if (!point) continue;
    await forEachLimited(point.disks, 4, async (disk) => {
      try {
        await replicaBlobClient(deps.blobService, disk.blob).withSnapshot(disk.snapshot).deleteIfExists();
      } catch (err) {
        if (!isNotFound(err)) throw err; // container gone: nothing left to delete
      }
    });
    await deps.vault.remove(Vault.pointDoc(input.machine, point.id));
    dropped.push(point.id);
  }
  return dropped;
}
