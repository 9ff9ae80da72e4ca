// One replication cycle of protectMachine: release what an earlier cycle could not, freeze a point
// in time, sync every disk in parallel, publish the point, release the source's view; or fail the
// cycle, keeping its changes for the next one and backing off.
import { CancellationScope, log, patched, upsertSearchAttributes } from '@temporalio/workflow';
import type { CycleFailing } from '../../shared/contracts/protect-machine';
import { FAILURE } from '../../shared/failures';
import { groupPointTag } from '../../shared/group-types';
import { pitIdOf } from '../../shared/pit-id';
import type { FrozenPoint, PointKind, RecoveryPoint, TransferMode } from '../../shared/replication-types';
import { OSR_LAST_POINT, OSR_RPO_SECONDS, OSR_SYNC_PERCENT } from '../../shared/search-attributes';
import { failureType, messageOf, storageUnavailable } from '../lib/failures';
import { pointId } from '../lib/points';
import { retryStorage } from '../lib/storage-retry';
import { noteDiskChanges } from './disk-changes';
import { pointClock } from './point-clock';
import type { GroupCycle } from './group-cut';
import {
  checkRpo,
  clear,
  failPointRequests,
  nowIso,
  raise,
  rpoSeconds,
  setState,
  showDetails,
  type ProtectRun,
} from './run';
import { followAgent } from './agent-routing';
import { noteResumed } from './resumed';
import { noteStoreAlerts } from './store-alerts';
import { syncDisk } from './sync-disk';

/** Backoff after a failed cycle: doubling per consecutive failure, capped, reset by a success. */
const CYCLE_BACKOFF_MS = { first: 2000, max: 60_000 };
/**
 * patched() ids. Histories recorded before these changes replay on the old path: failed cycles
 * there were retried at once, and a failed release after a failed cycle failed the workflow.
 */
const PATCH_CYCLE_BACKOFF = 'cycle-backoff';
const PATCH_DEFERRED_RELEASE = 'deferred-release';
/** patched() id: a failed freeze's point in time is released by the next cycle (old runs did not). */
const PATCH_FREEZE_FAILURE_RELEASE = 'freeze-failure-release';
/**
 * patched() id: a request for an app-consistent point that arrives while a crash-consistent cycle
 * is under way waits for the next cycle (old runs answered it with the crash-consistent point).
 */
const PATCH_APP_REQUEST_WAITS = 'agent-recovery';
// A point request that arrived after this cycle asked for its freeze waits for the next cycle: the
// point may be of an earlier time than the request (a planned failover's final point must be
// frozen after the source's writes stopped; before, a cycle under way answered it). Found by the
// agent's planned failover test, it holds for every source.
const PATCH_REQUEST_BEFORE_FREEZE = 'agent-planned-failover';

export async function cycle(run: ProtectRun, group?: GroupCycle): Promise<void> {
  await followAgent(run);
  const { s, machine, quickPs, applier } = run;
  run.cyclesThisRun += 1;
  s.cycle += 1;
  run.storageTroubleThisCycle = false;
  // Group points are crash-consistent cuts across members: their barrier holds writes, it
  // does not quiesce applications.
  let kind = group ? 'crash' : nextPointKind(run);
  // Whether this cycle tried to quiesce: only then does it answer requests for app-consistent points.
  const triedApp = kind === 'app';
  const waitsForApp = (r: ProtectRun['pointRequests'][number]): boolean =>
    (!group && !triedApp && r.request.kind === 'app' && patched(PATCH_APP_REQUEST_WAITS)) ||
    (!r.beforeFreeze && patched(PATCH_REQUEST_BEFORE_FREEZE));
  const modes: Record<string, TransferMode> = {};
  const sizes: Record<string, number> = {};
  for (const d of s.disks) {
    if (d.excluded) continue;
    modes[d.diskId] = d.nextMode;
    sizes[d.diskId] = d.sizeBytes;
  }
  let frozen: FrozenPoint;
  // Points in time an earlier failed cycle could not release go first: their bitmaps hold
  // changes that must be merged back before a new point is frozen.
  for (let pitId = s.unreleased?.[0]; pitId !== undefined; pitId = s.unreleased?.[0]) {
    try {
      await quickPs.releasePoint({ machine, pitId, success: false });
    } catch (err) {
      await group?.report({ phase: 'failed', reason: `could not release: ${messageOf(err)}` });
      return cycleFailed(run, `could not release the earlier point in time ${pitId}: ${messageOf(err)}`, err);
    }
    s.unreleased?.shift();
  }
  // Only requests made before the freeze is asked for are answered by this cycle's point.
  for (const r of run.pointRequests) r.beforeFreeze = true;
  // Temporal's time before the freeze: with the time after it, what bounds the true instant.
  const freezeAskedAt = Date.now();
  try {
    try {
      frozen = await quickPs.freezePoint({
        machine,
        cycle: s.cycle,
        modes,
        sizes,
        quiesce: kind === 'app',
      });
    } catch (err) {
      if (kind !== 'app' || failureType(err) !== FAILURE.QuiesceFailed) throw err;
      // No app-consistent point without a quiesced application: cut a crash-consistent one now.
      raise(run, 'quiesce-failed', 'warning', `${messageOf(err)}; this point is crash-consistent instead`);
      kind = 'crash';
      frozen = await quickPs.freezePoint({ machine, cycle: s.cycle, modes, sizes, quiesce: false });
    }
  } catch (err) {
    // The freeze may have failed after the source froze something under this cycle's point in
    // time (and could not undo it): release it first next cycle, or every later freeze finds the
    // disk still frozen. Releasing a point never frozen does nothing; its changes are merged back.
    if (patched(PATCH_FREEZE_FAILURE_RELEASE)) {
      s.unreleased = [...(s.unreleased ?? []), pitIdOf(machine.name, s.cycle)];
    }
    await group?.report({ phase: 'failed', reason: `could not freeze: ${messageOf(err)}` });
    return cycleFailed(run, `could not freeze a point in time: ${messageOf(err)}`, err);
  }
  const clock = pointClock(run, frozen, freezeAskedAt);
  await group?.report({ phase: 'frozen', instant: clock.instant });
  noteDiskChanges(run, frozen);
  noteStoreAlerts(run, frozen);
  const syncing = frozen.disks.some((d) => d.mode !== 'delta');
  if (syncing && s.state === 'protected') setState(run, 'resyncing');
  let published: RecoveryPoint;
  try {
    const summaries = await Promise.all(frozen.disks.map((disk) => syncDisk(run, frozen, disk)));
    const tag = group
      ? groupPointTag(group.cut.group, group.cut.cut)
      : run.pointRequests.find((r) => !r.done && !r.failed && !waitsForApp(r))?.request.tag;
    const publish = () =>
      applier.publishPoint({
        machine: machine.name,
        cycle: s.cycle,
        // Sortable by time; unique per machine and cycle.
        pointId: pointId(clock.instant, `c${frozen.cycle}`),
        ...clock,
        kind,
        tag,
        disks: frozen.disks.map((d) => ({ diskId: d.diskId, sizeBytes: d.sizeBytes })),
        reportStorageFaults: true,
      });
    try {
      published = await publish();
    } catch (err) {
      if (!storageUnavailable(err)) throw err;
      published = await retryStorage(run.storage, err, 'publishing the point', publish);
    }
    for (const sum of summaries) {
      s.stats.bytesSent += sum.sentBytes;
      s.stats.bytesChanged += sum.rawBytes;
    }
  } catch (err) {
    try {
      await CancellationScope.nonCancellable(() =>
        quickPs.releasePoint({ machine, pitId: frozen.pitId, success: false }),
      );
    } catch (releaseErr) {
      // The source went away with the cycle: keep the point to release (and its changes to merge
      // back) for when it answers again, instead of failing protection.
      if (!patched(PATCH_DEFERRED_RELEASE)) throw releaseErr;
      s.unreleased = [...(s.unreleased ?? []), frozen.pitId];
    }
    await group?.report({ phase: 'failed', reason: messageOf(err) });
    return cycleFailed(run, messageOf(err), err);
  }
  await group?.report({ phase: 'published', pointId: published.id, instant: published.instant });
  try {
    await CancellationScope.nonCancellable(() =>
      quickPs.releasePoint({ machine, pitId: frozen.pitId, success: true }),
    );
  } catch (err) {
    // The point is published; the source went away before its view was dropped. Release it
    // when the source answers again, merging its changes back: they are sent once more, not lost.
    if (!patched(PATCH_DEFERRED_RELEASE)) throw err;
    s.unreleased = [...(s.unreleased ?? []), frozen.pitId];
  }
  s.stats.cycles += 1;
  s.publishedCycle = s.cycle;
  run.progress = undefined;
  noteResumed(run, frozen, published);
  // Resolved by this point; a corrupt-segment alert stays: the operator should know storage or
  // the network damaged data, even though nothing damaged was applied.
  clear(run, 'cycle-failed');
  clear(run, 'source-unreachable');
  clear(run, 'resync-needed');
  s.failing = undefined;
  // Storage alerts stay until a whole cycle went through without throttling or time-outs.
  if (!run.storageTroubleThisCycle) {
    clear(run, 'storage-throttled');
    clear(run, 'storage-unreachable');
  }
  for (const d of frozen.disks) {
    const disk = s.disks.find((x) => x.diskId === d.diskId);
    if (disk) Object.assign(disk, { synced: true, nextMode: 'delta', sizeBytes: d.sizeBytes });
  }
  const brief = { id: published.id, instant: published.instant, kind: published.kind };
  s.lastPoint = brief;
  if (kind === 'app') s.lastAppPoint = brief;
  if (s.state === 'initial-sync' || s.state === 'resyncing') setState(run, 'protected');
  else showDetails(run);
  const waiting = run.pointRequests.filter((r) => !r.done && !r.failed && waitsForApp(r));
  for (const r of run.pointRequests) if (!r.done && !r.failed && !waiting.includes(r)) r.done = published;
  run.pointRequests.splice(0, run.pointRequests.length, ...waiting);
  upsertSearchAttributes([
    { key: OSR_LAST_POINT, value: new Date(Date.parse(published.instant)) },
    { key: OSR_RPO_SECONDS, value: rpoSeconds(run) ?? 0 },
    { key: OSR_SYNC_PERCENT, value: 100 },
  ]);
  checkRpo(run);
  // Housekeeping after the point is safe: failures here only delay cleanup.
  try {
    await Promise.all(
      frozen.disks.map((d) =>
        applier.deleteCycleSegments({ machine: machine.name, diskId: d.diskId, cycle: s.cycle }),
      ),
    );
    await applier.pruneRetention({ machine: machine.name, policy: s.policy });
  } catch (err) {
    log.warn('cleanup failed; retried next cycle', { error: messageOf(err) });
  }
}

function nextPointKind(run: ProtectRun): PointKind {
  const { s } = run;
  // Without a way to quiesce the application, no point can claim to be app-consistent.
  if (!run.canQuiesce) return 'crash';
  if (run.pointRequests.some((r) => !r.done && !r.failed && r.request.kind === 'app')) return 'app';
  if (s.policy.appPointSeconds <= 0 || !s.lastPoint) return 'crash';
  const lastApp = s.lastAppPoint ? Date.parse(s.lastAppPoint.instant) : 0;
  return Date.now() - lastApp >= s.policy.appPointSeconds * 1000 ? 'app' : 'crash';
}

function cycleFailed(run: ProtectRun, reason: string, err?: unknown): void {
  const { s, machine } = run;
  s.stats.failedCycles += 1;
  run.progress = undefined;
  const unreachable = failureType(err) === FAILURE.SourceUnreachable;
  if (unreachable) {
    raise(run, 'source-unreachable', 'critical', `the source of ${machine.name} does not answer: ${reason}`);
  }
  raise(
    run,
    'cycle-failed',
    'warning',
    `cycle ${s.cycle} failed, changes kept for the next cycle: ${reason}`,
  );
  failPointRequests(run, `cycle ${s.cycle} failed: ${reason}`);
  if (patched(PATCH_CYCLE_BACKOFF)) {
    const failures = (s.failing?.failures ?? 0) + 1;
    const delay = Math.min(CYCLE_BACKOFF_MS.first * 2 ** (failures - 1), CYCLE_BACKOFF_MS.max);
    s.failing = {
      since: s.failing?.since ?? nowIso(),
      failures,
      reason,
      sourceUnreachable: unreachable,
      retryAt: Date.now() + delay,
    } satisfies CycleFailing;
    showDetails(run);
  }
  checkRpo(run);
}
