// protectMachine: the entity workflow of one protected machine. It enables tracking, runs the
// initial sync, then cuts a recovery point every policy interval (delta cycles; app-consistent
// ones on their own frequency), tracks RPO, and keeps its history bounded with continueAsNew.
// All I/O is in activities: only ids, extents counts and small summaries travel here.
import {
  ApplicationFailure,
  CancellationScope,
  ActivityFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { CloudApplierActivities } from '../activities/cloud-applier';
import type { ProcessServerActivities } from '../activities/process-server';
import type { StorageTrouble, StorageUnavailableDetails } from '../shared/storage-faults';
import type { CycleFailing } from '../shared/contracts/protect-machine';
import type {
  FrozenDisk,
  FrozenPoint,
  PointKind,
  RecoveryPoint,
  TransferMode,
} from '../shared/replication-types';
import { groupPointTag } from '../shared/group-types';
import { OSR_LAST_POINT, OSR_RPO_SECONDS, OSR_STATE, OSR_SYNC_PERCENT } from '../shared/search-attributes';
import { CLOUD_APPLIER_TASK_QUEUE, processServerQueue } from '../shared/task-queues';
import {
  changePolicyUpdate,
  disableUpdate,
  pauseUpdate,
  resumeUpdate,
  resyncUpdate,
  statusQuery,
  takePointUpdate,
  type Alert,
  type MachineState,
  type MachineStatus,
  type PointRequest,
  type ProtectInput,
  type ProtectState,
  type SyncProgress,
} from '../shared/contracts/protect-machine';
import {
  cutDecisionSignal,
  groupCutSignal,
  memberReportSignal,
  setGroupSignal,
  type GroupCut,
  type MemberReport,
} from '../shared/contracts/consistency-group';
import { failureType, messageOf } from './failures';

/** A group cut in progress on this member, and how to tell the group how it went. */
interface GroupCycle {
  cut: GroupCut;
  report(r: Omit<MemberReport, 'cut' | 'machine'>): Promise<void>;
}

/** Segments per transfer activity call: progress shows after each slice. */
const SLICE_SEGMENTS = 64;
/** Block size of resync checksums: the dirty-bitmap granularity. */
const RESYNC_BLOCK_BYTES = 64 * 1024;
const MAX_CORRUPT_RESENDS = 3;
const MAX_ALERTS = 50;
/** Cycles per run before continueAsNew, unless the server suggests it earlier. */
const CYCLES_PER_RUN = 100;
/** Events per run before continueAsNew, whatever the cycle count (timers while paused add up). */
const MAX_HISTORY_EVENTS = 5000;
/** How long one step of a cycle waits for storage to come back before the cycle fails (changes kept). */
const STORAGE_PATIENCE_MS = 10 * 60_000;
/** Backoff between tries of a step that storage kept from finishing: doubling, capped. */
const STORAGE_BACKOFF_MS = { first: 2000, max: 60_000 };
/** How long a member that said `ready` waits for the group's go before giving the cut up. */
const CUT_DECISION_TIMEOUT = '10 minutes';
/** Backoff after a failed cycle: doubling per consecutive failure, capped, reset by a success. */
const CYCLE_BACKOFF_MS = { first: 2000, max: 60_000 };
/**
 * patched() ids. Histories recorded before these changes replay on the old path: failed cycles
 * there were retried at once, and a failed release after a failed cycle failed the workflow.
 */
const PATCH_CYCLE_BACKOFF = 'cycle-backoff';
const PATCH_DEFERRED_RELEASE = 'deferred-release';

export async function protectMachine(input: ProtectInput): Promise<MachineStatus> {
  const machine = input.machine;
  const s: ProtectState = input.carried ?? {
    state: 'enabling',
    policy: input.policy,
    disks: [],
    cycle: 0,
    alerts: [],
    alertSeq: 0,
    stats: { cycles: 0, failedCycles: 0, bytesSent: 0, bytesChanged: 0 },
  };

  const ps = proxyActivities<ProcessServerActivities>({
    taskQueue: processServerQueue(machine.site),
    startToCloseTimeout: '30m',
    heartbeatTimeout: '15s',
    retry: {
      initialInterval: '1s',
      maximumInterval: '30s',
      maximumAttempts: 20,
      nonRetryableErrorTypes: ['SourceError'],
    },
  });
  const quickPs = proxyActivities<ProcessServerActivities>({
    taskQueue: processServerQueue(machine.site),
    startToCloseTimeout: '2m',
    retry: {
      initialInterval: '1s',
      maximumInterval: '20s',
      maximumAttempts: 10,
      nonRetryableErrorTypes: ['SourceError'],
    },
  });
  const applier = proxyActivities<CloudApplierActivities>({
    taskQueue: CLOUD_APPLIER_TASK_QUEUE,
    startToCloseTimeout: '30m',
    heartbeatTimeout: '15s',
    retry: {
      initialInterval: '1s',
      maximumInterval: '30s',
      maximumAttempts: 20,
      nonRetryableErrorTypes: ['SegmentCorrupt', 'CycleNotUploaded'],
    },
  });

  let progress: SyncProgress[] | undefined;
  let wake = false;
  let cyclesThisRun = 0;
  let keepReplica = false;
  const canQuiesce = Boolean(
    machine.quiesce?.guestAgentSocket || machine.quiesce?.pre || machine.quiesce?.post,
  );
  const pointRequests: Array<{ request: PointRequest; done?: RecoveryPoint; failed?: string }> = [];
  let pendingCut: GroupCut | undefined;
  let cutDecision: { cut: number; go: boolean } | undefined;
  /** Storage trouble seen during the cycle in progress; a cycle without any clears the alerts. */
  let storageTroubleThisCycle = false;

  const nowIso = () => new Date(Date.now()).toISOString();
  const rpoSeconds = () =>
    s.lastPoint ? Math.max(0, Math.round((Date.now() - Date.parse(s.lastPoint.instant)) / 1000)) : undefined;

  function status(): MachineStatus {
    return {
      machine: machine.name,
      state: s.state,
      policy: s.policy,
      disks: s.disks,
      cycle: s.cycle,
      progress,
      lastPoint: s.lastPoint,
      lastAppPoint: s.lastAppPoint,
      rpoSeconds: rpoSeconds(),
      alerts: s.alerts,
      stats: s.stats,
      group: s.group,
      failing: s.failing && { ...s.failing, retryAt: new Date(s.failing.retryAt).toISOString() },
    };
  }

  /**
   * One alert per problem: a problem seen again (same kind, same disk where it names one) updates
   * the standing alert (count, last time, latest message, worst severity) instead of adding one.
   */
  function raise(kind: Alert['kind'], severity: Alert['severity'], message: string, subject?: string): void {
    log.warn('alert', { machine: machine.name, kind, message });
    const standing = s.alerts.find((a) => a.kind === kind && a.subject === subject);
    if (standing) {
      standing.count = (standing.count ?? 1) + 1;
      standing.lastAt = nowIso();
      standing.message = message;
      if (severity === 'critical') standing.severity = 'critical';
      return;
    }
    s.alertSeq += 1;
    s.alerts.push({ id: `${machine.name}-${s.alertSeq}`, at: nowIso(), severity, kind, message, subject });
    if (s.alerts.length > MAX_ALERTS) s.alerts.splice(0, s.alerts.length - MAX_ALERTS);
  }

  function clear(kind: Alert['kind']): void {
    s.alerts = s.alerts.filter((a) => a.kind !== kind);
  }

  function setState(next: MachineState): void {
    s.state = next;
    upsertSearchAttributes([{ key: OSR_STATE, value: next }]);
    showDetails();
  }

  /** What the Temporal Web UI shows as the workflow's current details: state, progress, last point. */
  function showDetails(): void {
    const parts: string[] = [s.state];
    if (progress?.length) {
      const done = progress.reduce((a, x) => a + x.bytesDone, 0);
      const all = progress.reduce((a, x) => a + x.bytesTotal, 0);
      parts.push(`cycle ${s.cycle}: ${all ? Math.floor((100 * done) / all) : 100}% of ${all} bytes`);
    }
    if (s.lastPoint) parts.push(`last point ${s.lastPoint.id} (${s.lastPoint.kind})`);
    if (s.group) parts.push(`group ${s.group}`);
    if (s.failing) parts.push(`failing: ${s.failing.failures} cycle(s) in a row, ${s.failing.reason}`);
    if (s.alerts.length) parts.push(`${s.alerts.length} alert(s), newest: ${s.alerts.at(-1)?.message ?? ''}`);
    setCurrentDetails(parts.join(' · '));
  }

  // Updates: validators refuse what cannot apply now, with the reason, before anything changes.
  setHandler(statusQuery, status);
  // Consistency groups (see consistency-group-api.ts for the protocol).
  setHandler(setGroupSignal, ({ group }) => {
    s.group = group ?? undefined;
    wake = true;
  });
  setHandler(groupCutSignal, (cut) => {
    pendingCut = cut;
    wake = true;
  });
  setHandler(cutDecisionSignal, (decision) => {
    cutDecision = decision;
  });
  setHandler(
    pauseUpdate,
    (_request) => {
      s.pausedFrom = s.state;
      setState('paused');
      wake = true;
      return status();
    },
    { validator: (_request) => refuseUnless(['initial-sync', 'protected', 'resyncing'], 'pause') },
  );
  setHandler(
    resumeUpdate,
    () => {
      setState(s.pausedFrom ?? 'protected');
      s.pausedFrom = undefined;
      wake = true;
      return status();
    },
    { validator: () => refuseUnless(['paused'], 'resume') },
  );
  setHandler(
    resyncUpdate,
    () => {
      for (const d of s.disks) if (!d.excluded) d.nextMode = d.synced ? 'resync' : 'full';
      wake = true;
      return status();
    },
    { validator: () => refuseUnless(['initial-sync', 'protected', 'resyncing', 'paused'], 'resync') },
  );
  setHandler(
    changePolicyUpdate,
    (policy) => {
      s.policy = policy;
      wake = true;
      return status();
    },
    {
      validator: (_policy) =>
        refuseUnless(
          ['enabling', 'initial-sync', 'protected', 'resyncing', 'paused'],
          'change the policy of',
        ),
    },
  );
  setHandler(
    disableUpdate,
    async (options) => {
      keepReplica = options.keepReplica ?? false;
      setState('disabling');
      wake = true;
      await condition(() => s.state === 'disabled');
      return status();
    },
    {
      validator: (_options) =>
        refuseUnless(['enabling', 'initial-sync', 'protected', 'resyncing', 'paused'], 'disable'),
    },
  );
  setHandler(
    takePointUpdate,
    async (request) => {
      const entry: (typeof pointRequests)[number] = { request };
      pointRequests.push(entry);
      wake = true;
      await condition(() => entry.done !== undefined || entry.failed !== undefined);
      if (entry.failed)
        throw ApplicationFailure.create({ type: 'PointFailed', message: entry.failed, nonRetryable: true });
      const p = entry.done as RecoveryPoint;
      return { id: p.id, instant: p.instant, kind: p.kind };
    },
    {
      validator: (request) => {
        refuseUnless(['initial-sync', 'protected', 'resyncing'], 'take a point of');
        if (request.kind === 'app' && !canQuiesce) {
          throw new Error(
            `machine ${machine.name} has no quiesce commands, so no app-consistent point can be cut; take a crash-consistent one, or protect it again with --guest-agent or --pre/--post`,
          );
        }
        if (request.kind !== 'crash' && request.kind !== 'app')
          throw new Error(`kind must be "crash" or "app", not "${String(request.kind)}"`);
      },
    },
  );
  function refuseUnless(states: MachineState[], action: string): void {
    if (!states.includes(s.state)) {
      throw new Error(`cannot ${action} machine ${machine.name} while it is ${s.state}`);
    }
  }

  // --- enable ---------------------------------------------------------------------------
  if (s.state === 'enabling') {
    const found = await quickPs.discoverDisks({ machine });
    const tracking = await quickPs.enableTracking({ machine, diskIds: found.disks.map((d) => d.diskId) });
    s.disks = found.disks.map((d) => ({
      diskId: d.diskId,
      sizeBytes: d.sizeBytes,
      synced: false,
      nextMode: 'full',
    }));
    for (const diskId of tracking.volatileDisks) {
      raise(
        'tracking-volatile',
        'warning',
        `${diskId} is not qcow2, so its change tracking lives only in memory: a restart of the VM or storage daemon forces a resync (checksums of every block). Convert the disk to qcow2 to avoid it.`,
        diskId,
      );
    }
    setState('initial-sync');
  }

  // --- the replication loop --------------------------------------------------------------
  const pendingPoints = () => pointRequests.some((r) => !r.done && !r.failed);
  // A function, not an inline comparison: handlers change the state while the loop awaits.
  const disabling = () => s.state === 'disabling';
  const historyIsLong = () =>
    cyclesThisRun >= (input.maxCyclesPerRun ?? CYCLES_PER_RUN) ||
    workflowInfo().continueAsNewSuggested ||
    workflowInfo().historyLength > MAX_HISTORY_EVENTS;
  while (s.state !== 'disabled') {
    if (s.state === 'disabling') {
      await disable();
      break;
    }
    if (pendingCut) {
      const cut = pendingCut;
      pendingCut = undefined;
      await groupCycle(cut);
      continue;
    }
    if (historyIsLong()) {
      // Keep the history bounded: hand the state to a fresh run once every handler has finished.
      // A point requested meanwhile is cut first, so its caller is not left waiting; so is a
      // group cut, so the group is not left waiting either.
      await condition(
        () => allHandlersFinished() || pendingPoints() || disabling() || pendingCut !== undefined,
      );
      if (disabling() || pendingCut) continue;
      if (!pendingPoints()) {
        await continueAsNew<typeof protectMachine>({
          machine,
          policy: s.policy,
          carried: s,
          maxCyclesPerRun: input.maxCyclesPerRun,
        });
      }
    }
    if (s.state === 'paused') {
      failPointRequests(`machine ${machine.name} is paused`);
      // RPO keeps growing while paused: keep checking it, so the alert comes when it should.
      await condition(() => s.state !== 'paused' || historyIsLong(), rpoCheckMs());
      checkRpo();
      continue;
    }
    // A group member's points are timed by its group; it still syncs and serves requests itself.
    const due = s.group ? Infinity : (s.lastCycleAt ?? 0) + s.policy.crashPointSeconds * 1000;
    const needsSync = s.disks.some((d) => !d.excluded && d.nextMode !== 'delta');
    // Cycles that keep failing wait out their backoff (a point asked for tries at once), so a
    // source that fails fast does not spin thousands of cycles and alerts.
    const backoffMs = s.failing ? s.failing.retryAt - Date.now() : 0;
    if (backoffMs > 0 && !pendingPoints()) {
      wake = false;
      await condition(() => wake || pendingCut !== undefined, Math.max(1, Math.min(backoffMs, rpoCheckMs())));
      checkRpo();
      continue;
    }
    if (needsSync || pendingPoints() || Date.now() >= due) {
      s.lastCycleAt = Date.now();
      await cycle();
      continue;
    }
    wake = false;
    await condition(() => wake, Math.max(1, Math.min(due - Date.now(), rpoCheckMs())));
    checkRpo();
  }
  return status();

  // --- a group cut: wait for the barrier, then one cycle frozen inside it --------------------
  async function groupCycle(cut: GroupCut): Promise<void> {
    const groupHandle = getExternalWorkflowHandle(cut.groupWorkflowId);
    const g: GroupCycle = {
      cut,
      report: async (r) => {
        try {
          await groupHandle.signal(memberReportSignal, { cut: cut.cut, machine: machine.name, ...r });
        } catch (err) {
          // The group is gone (deleted meanwhile): this member's point is an ordinary one.
          log.warn('group report not delivered', { group: cut.group, error: messageOf(err) });
        }
      },
    };
    if (s.state !== 'protected') {
      await g.report({ phase: 'failed', reason: `machine ${machine.name} is ${s.state}` });
      return;
    }
    await g.report({ phase: 'ready' });
    const decided = await condition(
      () => cutDecision?.cut === cut.cut || pendingCut !== undefined || disabling(),
      CUT_DECISION_TIMEOUT,
    );
    if (!decided || cutDecision?.cut !== cut.cut || !cutDecision.go) return;
    s.lastCycleAt = Date.now();
    await cycle(g);
  }

  // --- one cycle: freeze, transfer, apply, publish, release --------------------------------
  async function cycle(group?: GroupCycle): Promise<void> {
    cyclesThisRun += 1;
    s.cycle += 1;
    storageTroubleThisCycle = false;
    // Group points are crash-consistent cuts across members: their barrier holds writes, it
    // does not quiesce applications.
    let kind = group ? 'crash' : nextPointKind();
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
        return cycleFailed(`could not release the earlier point in time ${pitId}: ${messageOf(err)}`, err);
      }
      s.unreleased?.shift();
    }
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
        if (kind !== 'app' || failureType(err) !== 'QuiesceFailed') throw err;
        // No app-consistent point without a quiesced application: cut a crash-consistent one now.
        raise('quiesce-failed', 'warning', `${messageOf(err)}; this point is crash-consistent instead`);
        kind = 'crash';
        frozen = await quickPs.freezePoint({ machine, cycle: s.cycle, modes, sizes, quiesce: false });
      }
    } catch (err) {
      await group?.report({ phase: 'failed', reason: `could not freeze: ${messageOf(err)}` });
      return cycleFailed(`could not freeze a point in time: ${messageOf(err)}`, err);
    }
    await group?.report({ phase: 'frozen', instant: frozen.instant });
    noteDiskChanges(frozen);
    const syncing = frozen.disks.some((d) => d.mode !== 'delta');
    if (syncing && s.state === 'protected') setState('resyncing');
    let published: RecoveryPoint;
    try {
      const summaries = await Promise.all(frozen.disks.map((disk) => syncDisk(frozen, disk)));
      const tag = group
        ? groupPointTag(group.cut.group, group.cut.cut)
        : pointRequests.find((r) => !r.done && !r.failed)?.request.tag;
      const publish = () =>
        applier.publishPoint({
          machine: machine.name,
          cycle: s.cycle,
          pointId: pointIdOf(frozen),
          instant: frozen.instant,
          kind,
          tag,
          disks: frozen.disks.map((d) => ({ diskId: d.diskId, sizeBytes: d.sizeBytes })),
          reportStorageFaults: true,
        });
      try {
        published = await publish();
      } catch (err) {
        if (!storageUnavailable(err)) throw err;
        published = await retryStorage(err, 'publishing the point', publish);
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
      return cycleFailed(messageOf(err), err);
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
    progress = undefined;
    // Resolved by this point; a corrupt-segment alert stays: the operator should know storage or
    // the network damaged data, even though nothing damaged was applied.
    clear('cycle-failed');
    clear('source-unreachable');
    clear('resync-needed');
    s.failing = undefined;
    // Storage alerts stay until a whole cycle went through without throttling or time-outs.
    if (!storageTroubleThisCycle) {
      clear('storage-throttled');
      clear('storage-unreachable');
    }
    for (const d of frozen.disks) {
      const disk = s.disks.find((x) => x.diskId === d.diskId);
      if (disk) Object.assign(disk, { synced: true, nextMode: 'delta', sizeBytes: d.sizeBytes });
    }
    const brief = { id: published.id, instant: published.instant, kind: published.kind };
    s.lastPoint = brief;
    if (kind === 'app') s.lastAppPoint = brief;
    if (s.state === 'initial-sync' || s.state === 'resyncing') setState('protected');
    else showDetails();
    for (const r of pointRequests) if (!r.done && !r.failed) r.done = published;
    pointRequests.splice(0, pointRequests.length);
    upsertSearchAttributes([
      { key: OSR_LAST_POINT, value: new Date(Date.parse(published.instant)) },
      { key: OSR_RPO_SECONDS, value: rpoSeconds() ?? 0 },
      { key: OSR_SYNC_PERCENT, value: 100 },
    ]);
    checkRpo();
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

  async function syncDisk(frozen: FrozenPoint, disk: FrozenDisk) {
    const ensureReplica = () =>
      applier.ensureReplicaDisk({
        machine: machine.name,
        diskId: disk.diskId,
        sizeBytes: disk.sizeBytes,
        reportStorageFaults: true,
      });
    let replica: Awaited<ReturnType<typeof ensureReplica>>;
    try {
      replica = await ensureReplica();
    } catch (err) {
      if (!storageUnavailable(err)) throw err;
      replica = await retryStorage(err, `preparing the replica of ${disk.diskId}`, ensureReplica);
    }
    noteStorageTrouble(`preparing the replica of ${disk.diskId}`, replica.storage);
    // A full copy into a replica that already exists (an earlier protection, a failed first sync)
    // becomes a checksum resync: only differing blocks cross the wire.
    let mode: TransferMode = disk.mode === 'full' && replica.existed ? 'resync' : disk.mode;
    // Storage that forgot cycles it had acknowledged (an emulator killed before it saved them)
    // holds an older replica than the dirty bitmap assumes: a delta would build a wrong image.
    // (appliedCycle is absent only in histories recorded before it existed.)
    if (replica.appliedCycle !== undefined && mode === 'delta') {
      if (!replica.existed) mode = 'full';
      else if (s.publishedCycle !== undefined && replica.appliedCycle < s.publishedCycle) mode = 'resync';
      if (mode !== 'delta') {
        raise(
          'storage-rolled-back',
          'critical',
          `storage lost writes it had acknowledged: the replica of ${disk.diskId} holds cycle ${replica.appliedCycle}, OSR had published cycle ${s.publishedCycle ?? 0}; resynchronizing it by checksums (points after cycle ${replica.appliedCycle} are gone from storage)`,
          disk.diskId,
        );
      }
    }
    const checksumsBlob =
      mode === 'resync'
        ? (
            await applier.replicaChecksums({
              machine: machine.name,
              diskId: disk.diskId,
              blockBytes: RESYNC_BLOCK_BYTES,
            })
          ).blob
        : undefined;
    let total = { segments: 0, rawBytes: 0, zeroBytes: 0, sentBytes: 0 };
    // Loops, not helper functions: an extra await would reorder commands between parallel disks
    // and break the replay of recorded histories.
    let attempt = 0;
    for (let fromIndex = 0; ; fromIndex = 0) {
      for (;;) {
        const send = (resumeAt?: number) =>
          ps.transferDisk({
            point: frozen,
            diskId: disk.diskId,
            mode,
            fromIndex: Math.max(fromIndex, resumeAt ?? 0),
            maxSegments: SLICE_SEGMENTS,
            checksumsBlob,
            reportStorageFaults: true,
          });
        let slice: Awaited<ReturnType<typeof send>>;
        try {
          slice = await send();
        } catch (err) {
          if (!storageUnavailable(err)) throw err;
          slice = await retryStorage(err, `sending ${disk.diskId}`, send);
        }
        noteStorageTrouble(`sending ${disk.diskId}`, slice.storage);
        total = {
          segments: slice.segmentsTotal,
          rawBytes: slice.bytesTotal,
          zeroBytes: total.zeroBytes + slice.summary.zeroBytes,
          sentBytes: total.sentBytes + slice.summary.sentBytes,
        };
        reportProgress({
          diskId: disk.diskId,
          mode,
          segmentsDone: slice.nextIndex,
          segmentsTotal: slice.segmentsTotal,
          bytesDone: slice.bytesDone,
          bytesTotal: slice.bytesTotal,
        });
        if (slice.done) break;
        fromIndex = slice.nextIndex;
      }
      let sendAgain = false;
      for (; ; attempt++) {
        try {
          const apply = () =>
            applier.applyCycle({
              machine: machine.name,
              diskId: disk.diskId,
              cycle: frozen.cycle,
              reportStorageFaults: true,
            });
          let applied: Awaited<ReturnType<typeof apply>>;
          try {
            applied = await apply();
          } catch (err) {
            if (!storageUnavailable(err)) throw err;
            applied = await retryStorage(err, `applying ${disk.diskId}`, apply);
          }
          noteStorageTrouble(`applying ${disk.diskId}`, applied.storage);
          break;
        } catch (err) {
          if (failureType(err) === 'CycleNotUploaded' && attempt < MAX_CORRUPT_RESENDS) {
            // The transfer had finished, so the cycle's manifest was written: storage lost it (an
            // emulator restarted without having saved it). Send the cycle again; segments still in
            // the cache are skipped.
            raise(
              'storage-rolled-back',
              'warning',
              `cycle ${frozen.cycle} of ${disk.diskId} vanished from the cache after it was uploaded (storage lost acknowledged writes); sending it again`,
              disk.diskId,
            );
            attempt += 1;
            sendAgain = true;
            break;
          }
          const corrupt = corruptIndices(err);
          if (!corrupt || attempt >= MAX_CORRUPT_RESENDS) throw err;
          raise(
            'segment-corrupt',
            'warning',
            `segments ${corrupt.join(', ')} of ${disk.diskId} (cycle ${frozen.cycle}) failed verification in the cache and were not applied; sending them again`,
            disk.diskId,
          );
          const resend = () =>
            ps.transferDisk({
              point: frozen,
              diskId: disk.diskId,
              mode,
              fromIndex: 0,
              maxSegments: corrupt.length,
              onlySegments: corrupt,
              checksumsBlob,
              reportStorageFaults: true,
            });
          try {
            await resend();
          } catch (resendErr) {
            if (!storageUnavailable(resendErr)) throw resendErr;
            await retryStorage(resendErr, `sending segments of ${disk.diskId} again`, resend);
          }
        }
      }
      if (!sendAgain) break;
    }
    return total;
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
  async function retryStorage<T>(
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
        storageTroubleThisCycle = true;
        const giveUp = Date.now() - began + delay > STORAGE_PATIENCE_MS;
        raise(
          details.problem === 'throttled' ? 'storage-throttled' : 'storage-unreachable',
          'critical',
          `${messageOf(err)}; ${giveUp ? `gave up after ${Math.round((Date.now() - began) / 1000)} s: this cycle fails and its changes go with the next one` : `trying again in ${delay / 1000} s`}. Nothing is lost: unsent changes stay at the source.`,
        );
        if (giveUp) throw err;
        if (details.nextIndex !== undefined) resumeAt = details.nextIndex;
        await sleep(delay);
        delay = Math.min(delay * 2, STORAGE_BACKOFF_MS.max);
        checkRpo();
      }
      try {
        const result = await step(resumeAt);
        noteStorageTrouble(what, (result as { storage?: StorageTrouble } | undefined)?.storage);
        return result;
      } catch (next) {
        err = next;
      }
    }
  }

  function noteStorageTrouble(what: string, t: StorageTrouble | undefined): void {
    if (!t || t.throttled + t.timeouts + t.unreachable === 0) return;
    storageTroubleThisCycle = true;
    const last = t.last ? ` (last: ${t.last})` : '';
    if (t.throttled > 0) {
      raise(
        'storage-throttled',
        'warning',
        `${what} (cycle ${s.cycle}): the storage endpoint answered 503 Server Busy / 500 to ${t.throttled} request tries${last}; they were retried with backoff and went through`,
      );
    }
    if (t.timeouts + t.unreachable > 0) {
      raise(
        'storage-unreachable',
        'warning',
        `${what} (cycle ${s.cycle}): ${t.timeouts} request tries got no answer in time and ${t.unreachable} could not reach the storage endpoint${last}; they were retried with backoff and went through`,
      );
    }
  }

  function reportProgress(p: SyncProgress): void {
    progress = [...(progress ?? []).filter((x) => x.diskId !== p.diskId), p];
    showDetails();
    if (s.state === 'initial-sync' || s.state === 'resyncing') {
      const done = progress.reduce((a, x) => a + x.bytesDone, 0);
      const all = progress.reduce((a, x) => a + x.bytesTotal, 0);
      upsertSearchAttributes([
        { key: OSR_SYNC_PERCENT, value: all === 0 ? 100 : Math.floor((100 * done) / all) },
      ]);
    }
  }

  function noteDiskChanges(frozen: FrozenPoint): void {
    for (const warning of frozen.warnings) {
      const kind: Alert['kind'] = warning.startsWith('tracking lost')
        ? 'resync-needed'
        : warning.includes('shrank')
          ? 'disk-shrunk'
          : warning.includes('vanished')
            ? 'disk-vanished'
            : 'disk-added';
      // The disk a warning is about leads it ("tracking lost on <disk> …", "<disk> vanished …").
      const subject = kind === 'resync-needed' ? warning.split(' ')[3] : warning.split(' ')[0];
      raise(kind, kind === 'disk-added' ? 'warning' : 'critical', warning, subject);
    }
    for (const d of frozen.disks) {
      const known = s.disks.find((x) => x.diskId === d.diskId);
      if (!known) s.disks.push({ diskId: d.diskId, sizeBytes: d.sizeBytes, synced: false, nextMode: 'full' });
    }
    for (const known of s.disks) {
      if (!frozen.disks.some((d) => d.diskId === known.diskId))
        known.excluded = 'not in the last frozen point (see alerts)';
      else delete known.excluded;
    }
  }

  function nextPointKind(): PointKind {
    // Without a way to quiesce the application, no point can claim to be app-consistent.
    if (!canQuiesce) return 'crash';
    if (pointRequests.some((r) => !r.done && !r.failed && r.request.kind === 'app')) return 'app';
    if (s.policy.appPointSeconds <= 0 || !s.lastPoint) return 'crash';
    const lastApp = s.lastAppPoint ? Date.parse(s.lastAppPoint.instant) : 0;
    return Date.now() - lastApp >= s.policy.appPointSeconds * 1000 ? 'app' : 'crash';
  }

  /** How often RPO is checked between cycles: often enough to alert within a tenth of the threshold. */
  function rpoCheckMs(): number {
    return Math.max(1000, Math.min(60_000, (s.policy.rpoThresholdSeconds * 1000) / 10));
  }

  function checkRpo(): void {
    const rpo = rpoSeconds();
    if (rpo === undefined) return;
    upsertSearchAttributes([{ key: OSR_RPO_SECONDS, value: rpo }]);
    const exceeded = s.alerts.some((a) => a.kind === 'rpo-exceeded');
    if (rpo > s.policy.rpoThresholdSeconds && !exceeded) {
      raise(
        'rpo-exceeded',
        'critical',
        `RPO is ${rpo} s, over the policy's threshold of ${s.policy.rpoThresholdSeconds} s`,
      );
    } else if (rpo <= s.policy.rpoThresholdSeconds && exceeded) {
      clear('rpo-exceeded');
    }
  }

  function cycleFailed(reason: string, err?: unknown): void {
    s.stats.failedCycles += 1;
    progress = undefined;
    const unreachable = failureType(err) === 'SourceUnreachable';
    if (unreachable) {
      raise('source-unreachable', 'critical', `the source of ${machine.name} does not answer: ${reason}`);
    }
    raise('cycle-failed', 'warning', `cycle ${s.cycle} failed, changes kept for the next cycle: ${reason}`);
    failPointRequests(`cycle ${s.cycle} failed: ${reason}`);
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
      showDetails();
    }
    checkRpo();
  }

  function failPointRequests(reason: string): void {
    for (const r of pointRequests) if (!r.done) r.failed = reason;
    pointRequests.splice(0, pointRequests.length);
  }

  async function disable(): Promise<void> {
    failPointRequests(`machine ${machine.name} is being disabled`);
    await quickPs.disableTracking({ machine });
    if (!keepReplica) await applier.deleteReplica({ machine: machine.name });
    setState('disabled');
  }
}

function pointIdOf(frozen: FrozenPoint): string {
  // Sortable by time; unique per machine and cycle.
  return `${frozen.instant.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-c${frozen.cycle}`;
}

function storageUnavailable(err: unknown): StorageUnavailableDetails | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure && cause.type === 'StorageUnavailable') {
    return (cause.details?.[0] as StorageUnavailableDetails | undefined) ?? { problem: 'unreachable' };
  }
  return undefined;
}

function corruptIndices(err: unknown): number[] | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure && cause.type === 'SegmentCorrupt') {
    const details = cause.details?.[0] as { indices?: number[] } | undefined;
    return details?.indices;
  }
  return undefined;
}
