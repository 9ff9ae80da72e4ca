// reprotect: replicates a failed-over machine from the recovery site back onto its original disks
// in the primary site. The recovery site's process-server role reads the failed-over machine (the
// materialized qemu-storage-daemon: same CBT connector, dirty bitmaps, block pipeline, osr-cache);
// the primary site's master target verifies each segment as the cloud applier does and writes it
// to the original disks through NBD, journaled so that its last fully applied cycle is a point.
// First cycle: a diff resync (checksums of the original disks, only differing blocks cross), or a
// full copy into new disks when the originals are gone; then a delta cycle every interval, until
// failback asks for a final cycle (finalCycle) or the operator stops it (stopReprotect).
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { FAILURE } from '../shared/failures';
import type { MasterTargetActivities } from '../activities/master-target';
import type { ProcessServerActivities } from '../activities/process-server';
import type { FailbackTargetDisk } from '../shared/failback-types';
import type { FrozenDisk, FrozenPoint, TransferMode } from '../shared/replication-types';
import { OSR_STATE, OSR_SYNC_PERCENT } from '../shared/search-attributes';
import { masterTargetQueue, processServerQueue } from '../shared/task-queues';
import {
  finalCycleUpdate,
  reprotectStatusQuery,
  stopReprotectUpdate,
  type FinalCycleResult,
  type ReprotectInput,
  type ReprotectState,
  type ReprotectStatus,
  type ReverseProgress,
} from '../shared/contracts/reprotect';
import { messageOf } from './lib/failures';

const SLICE_SEGMENTS = 64;
/** The replica checksums' block size: the process server's resync compares in these blocks. */
const RESYNC_BLOCK_BYTES = 64 * 1024;
const MAX_CORRUPT_RESENDS = 3;
const MAX_ALERTS = 50;
const CYCLES_PER_RUN = 100;
const MAX_HISTORY_EVENTS = 5000;

export async function reprotect(input: ReprotectInput): Promise<ReprotectStatus> {
  const { machine, source } = input;
  const s: ReprotectStatus = input.carried ?? {
    machine: machine.name,
    job: input.job,
    failoverJob: input.failoverJob,
    state: 'preparing',
    source,
    nodes: input.nodes,
    cycle: 0,
    cycles: 0,
    failedCycles: 0,
    disks: [],
    alerts: [],
  };
  const retry = { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 20 } as const;
  const ps = proxyActivities<ProcessServerActivities>({
    taskQueue: processServerQueue(source.site),
    startToCloseTimeout: '30m',
    heartbeatTimeout: '15s',
    retry: { ...retry, nonRetryableErrorTypes: [FAILURE.SourceError] },
  });
  const quickPs = proxyActivities<ProcessServerActivities>({
    taskQueue: processServerQueue(source.site),
    startToCloseTimeout: '2m',
    retry: { ...retry, maximumAttempts: 10, nonRetryableErrorTypes: [FAILURE.SourceError] },
  });
  const mt = proxyActivities<MasterTargetActivities>({
    taskQueue: masterTargetQueue(machine.site),
    startToCloseTimeout: '30m',
    heartbeatTimeout: '15s',
    retry: { ...retry, nonRetryableErrorTypes: [FAILURE.SegmentCorrupt] },
  });

  let finalRequested = false;
  let finalResult: FinalCycleResult | undefined;
  let finalFailed: string | undefined;
  let stopRequested = false;
  let wake = false;
  let cyclesThisRun = 0;
  let lastCycleAt = 0;
  let lastFailed = false;
  const nextMode: Record<string, TransferMode> = {};
  for (const d of s.disks) nextMode[d.diskId] = 'delta';

  const nowIso = () => new Date(Date.now()).toISOString();
  const setState = (state: ReprotectState) => {
    s.state = state;
    upsertSearchAttributes([{ key: OSR_STATE, value: state }]);
  };
  const alert = (message: string) => {
    s.alerts.push({ at: nowIso(), message });
    if (s.alerts.length > MAX_ALERTS) s.alerts.splice(0, s.alerts.length - MAX_ALERTS);
    log.warn('reprotect alert', { machine: machine.name, message });
  };

  setHandler(reprotectStatusQuery, () => s);
  setHandler(
    finalCycleUpdate,
    async () => {
      finalRequested = true;
      finalFailed = undefined;
      wake = true;
      await condition(() => finalResult !== undefined || finalFailed !== undefined);
      if (finalFailed)
        throw ApplicationFailure.create({
          type: FAILURE.FinalCycleFailed,
          message: finalFailed,
          nonRetryable: true,
        });
      return finalResult as FinalCycleResult;
    },
    {
      validator: () => {
        if (s.state === 'synced') return;
        if (s.state !== 'protected')
          throw new Error(
            `cannot fail ${machine.name} back while its reprotect is ${s.state}: ` +
              (s.state === 'stopped'
                ? 'reprotect it again first'
                : 'wait until the first (resync) cycle is applied, see `osr reprotect-status`'),
          );
      },
    },
  );
  setHandler(
    stopReprotectUpdate,
    async () => {
      stopRequested = true;
      wake = true;
      await condition(() => s.state === 'stopped');
      return s;
    },
    {
      validator: () => {
        if (s.state === 'final-cycle' || s.state === 'synced' || s.state === 'stopped')
          throw new Error(`cannot stop the reprotect of ${machine.name} while it is ${s.state}`);
      },
    },
  );

  // --- prepare: the failed-over disks, change tracking, the original disks ----------------
  if (s.state === 'preparing') {
    const found = await quickPs.discoverDisks({ machine: source });
    await quickPs.enableTracking({ machine: source, diskIds: found.disks.map((d) => d.diskId) });
    const originalOf = (node: string) => Object.entries(input.nodes).find(([, n]) => n === node)?.[0] ?? node;
    s.target = await mt.prepareFailbackTargets({
      machine,
      disks: found.disks.map((d) => ({ diskId: originalOf(d.diskId), sizeBytes: d.sizeBytes })),
    });
    s.disks = s.target.disks.map((t) => ({
      diskId: t.diskId,
      sentBytes: 0,
      rawBytes: 0,
      resyncRawBytes: 0,
      resyncSentBytes: 0,
      resyncMode: t.existed ? 'resync' : 'full',
    }));
    setState('resyncing');
  }
  if (s.state === 'resyncing') {
    for (const t of s.target?.disks ?? []) nextMode[nodeOf(t.diskId)] = t.existed ? 'resync' : 'full';
  }

  const historyIsLong = () =>
    cyclesThisRun >= (input.maxCyclesPerRun ?? CYCLES_PER_RUN) ||
    workflowInfo().continueAsNewSuggested ||
    workflowInfo().historyLength > MAX_HISTORY_EVENTS;

  while (s.state !== 'synced' && s.state !== 'stopped') {
    if (stopRequested) {
      await CancellationScope.nonCancellable(async () => {
        // The original disks go back to the master target's last point (before the resync when
        // none was committed): a stopped reprotect never leaves them half-written.
        for (const t of s.target?.disks ?? [])
          await mt.rollbackIncomplete({ machine: machine.name, disk: targetOf(nodeOf(t.diskId)) });
        if (s.target) await mt.releaseFailbackTargets({ machine: machine.name, target: s.target });
        await quickPs.disableTracking({ machine: source }).catch(() => undefined);
      });
      setState('stopped');
      break;
    }
    if (historyIsLong() && !finalRequested) {
      await condition(() => allHandlersFinished() || finalRequested || stopRequested);
      if (!finalRequested && !stopRequested) await continueAsNew<typeof reprotect>({ ...input, carried: s });
      continue;
    }
    // After a failed cycle the next one waits an interval too, resync or not.
    const due = lastCycleAt + input.intervalSeconds * 1000;
    const syncing = s.state === 'resyncing' && !lastFailed;
    if (finalRequested || syncing || Date.now() >= due) {
      const wasFinal = finalRequested && s.state === 'protected';
      if (wasFinal) setState('final-cycle');
      lastCycleAt = Date.now();
      const done = await cycle();
      lastFailed = done === undefined;
      if (wasFinal) {
        if (done) {
          finalResult = { cycle: done.cycle, instant: done.instant, disks: s.disks };
          setState('synced');
        } else {
          finalFailed = `the final cycle ${s.cycle} of ${machine.name} failed: ${s.alerts[s.alerts.length - 1]?.message ?? ''}`;
          finalRequested = false;
          setState('protected');
        }
      }
      continue;
    }
    wake = false;
    await condition(() => wake, Math.max(1, due - Date.now()));
  }
  // Answer the last updates before completing.
  await condition(allHandlersFinished);
  return s;

  function nodeOf(diskId: string): string {
    return s.nodes[diskId] ?? diskId;
  }

  /** The target disk as the master target addresses it: named like the recovery-site node. */
  function targetOf(node: string): FailbackTargetDisk {
    const t = s.target?.disks.find((d) => nodeOf(d.diskId) === node);
    if (!t) throw ApplicationFailure.nonRetryable(`no original disk for recovery-site disk ${node}`);
    return { ...t, diskId: node };
  }

  async function cycle(): Promise<FrozenPoint | undefined> {
    cyclesThisRun += 1;
    s.cycle += 1;
    const modes: Record<string, TransferMode> = {};
    const sizes: Record<string, number> = {};
    for (const t of s.target?.disks ?? []) {
      modes[nodeOf(t.diskId)] = nextMode[nodeOf(t.diskId)] ?? 'delta';
      sizes[nodeOf(t.diskId)] = t.sizeBytes;
    }
    let frozen: FrozenPoint;
    try {
      frozen = await quickPs.freezePoint({ machine: source, cycle: s.cycle, modes, sizes, quiesce: false });
    } catch (err) {
      cycleFailed(`could not freeze a point in time: ${messageOf(err)}`);
      return undefined;
    }
    for (const w of frozen.warnings) alert(w);
    try {
      const sums = await Promise.all(frozen.disks.map((d) => syncDisk(frozen, d)));
      // Every disk has the cycle: the master target's point, the state failback may bring up.
      await mt.commitReversePoint({
        machine: machine.name,
        diskIds: frozen.disks.map((d) => d.diskId),
        cycle: frozen.cycle,
      });
      for (const [i, d] of frozen.disks.entries()) {
        const stats = s.disks.find((x) => nodeOf(x.diskId) === d.diskId);
        const sum = sums[i];
        if (!stats || !sum) continue;
        stats.sentBytes += sum.sentBytes;
        stats.rawBytes += sum.rawBytes;
        if (d.mode !== 'delta') {
          stats.resyncRawBytes += sum.rawBytes;
          stats.resyncSentBytes += sum.sentBytes;
        }
      }
    } catch (err) {
      await CancellationScope.nonCancellable(() =>
        quickPs.releasePoint({ machine: source, pitId: frozen.pitId, success: false }),
      );
      cycleFailed(messageOf(err));
      return undefined;
    }
    await CancellationScope.nonCancellable(() =>
      quickPs.releasePoint({ machine: source, pitId: frozen.pitId, success: true }),
    );
    s.cycles += 1;
    s.progress = undefined;
    s.lastApplied = { cycle: frozen.cycle, instant: frozen.instant };
    for (const d of frozen.disks) nextMode[d.diskId] = 'delta';
    if (s.state === 'resyncing') setState('protected');
    upsertSearchAttributes([{ key: OSR_SYNC_PERCENT, value: 100 }]);
    try {
      await Promise.all(
        frozen.disks.map((d) =>
          mt.deleteReverseCycle({ machine: machine.name, diskId: d.diskId, cycle: frozen.cycle }),
        ),
      );
    } catch (err) {
      log.warn('reverse cycle cleanup failed', { error: messageOf(err) });
    }
    return frozen;
  }

  async function syncDisk(frozen: FrozenPoint, disk: FrozenDisk) {
    const target = targetOf(disk.diskId);
    const mode = disk.mode;
    const checksumsBlob =
      mode === 'resync'
        ? (await mt.targetChecksums({ machine: machine.name, disk: target, blockBytes: RESYNC_BLOCK_BYTES }))
            .blob
        : undefined;
    let fromIndex = 0;
    const total = { rawBytes: 0, sentBytes: 0 };
    for (;;) {
      const slice = await ps.transferDisk({
        point: frozen,
        diskId: disk.diskId,
        mode,
        fromIndex,
        maxSegments: SLICE_SEGMENTS,
        checksumsBlob,
      });
      total.rawBytes = slice.bytesTotal;
      total.sentBytes += slice.summary.sentBytes;
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
    for (let attempt = 0; ; attempt++) {
      try {
        await mt.applyReverseCycle({ machine: machine.name, disk: target, cycle: frozen.cycle });
        break;
      } catch (err) {
        const corrupt = corruptIndices(err);
        if (!corrupt || attempt >= MAX_CORRUPT_RESENDS) throw err;
        alert(
          `segments ${corrupt.join(', ')} of ${disk.diskId} (reverse cycle ${frozen.cycle}) failed verification and were not applied; sending them again`,
        );
        const resent = await ps.transferDisk({
          point: frozen,
          diskId: disk.diskId,
          mode,
          fromIndex: 0,
          maxSegments: corrupt.length,
          onlySegments: corrupt,
          checksumsBlob,
        });
        total.sentBytes += resent.summary.sentBytes;
      }
    }
    return total;
  }

  function reportProgress(p: ReverseProgress): void {
    s.progress = [...(s.progress ?? []).filter((x) => x.diskId !== p.diskId), p];
    if (s.state === 'resyncing') {
      const done = s.progress.reduce((a, x) => a + x.bytesDone, 0);
      const all = s.progress.reduce((a, x) => a + x.bytesTotal, 0);
      upsertSearchAttributes([
        { key: OSR_SYNC_PERCENT, value: all === 0 ? 100 : Math.floor((100 * done) / all) },
      ]);
    }
  }

  function cycleFailed(reason: string): void {
    s.failedCycles += 1;
    s.progress = undefined;
    alert(`reverse cycle ${s.cycle} failed, changes kept for the next cycle: ${reason}`);
  }
}

function corruptIndices(err: unknown): number[] | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure && cause.type === FAILURE.SegmentCorrupt) {
    const details = cause.details?.[0] as { indices?: number[] } | undefined;
    return details?.indices;
  }
  return undefined;
}
