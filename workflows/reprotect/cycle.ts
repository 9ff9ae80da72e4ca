// One reverse cycle of reprotect: freeze the recovery-site copy, send every disk's changes to the
// master target, which applies them and commits the cycle as its point; or fail the cycle, keeping
// its changes for the next one.
import { CancellationScope, log, upsertSearchAttributes } from '@temporalio/workflow';
import type { ReverseProgress } from '../../shared/contracts/reprotect';
import type { FrozenDisk, FrozenPoint, TransferMode } from '../../shared/replication-types';
import { OSR_SYNC_PERCENT } from '../../shared/search-attributes';
import { diskChangesOf } from '../lib/disk-changes';
import { messageOf } from '../lib/failures';
import { RESYNC_BLOCK_BYTES, SLICE_SEGMENTS, resendRequest, segmentsToResend } from '../lib/segments';
import { alert, nodeOf, routeMasterTarget, setState, targetOf, type ReprotectRun } from './run';

/** Runs one cycle; the frozen point when it was applied and committed, undefined when it failed. */
export async function cycle(run: ReprotectRun): Promise<FrozenPoint | undefined> {
  await routeMasterTarget(run);
  const { s, quickPs, mt } = run;
  const { machine, source } = run.input;
  run.cyclesThisRun += 1;
  s.cycle += 1;
  const modes: Record<string, TransferMode> = {};
  const sizes: Record<string, number> = {};
  for (const t of s.target?.disks ?? []) {
    modes[nodeOf(run, t.diskId)] = run.nextMode[nodeOf(run, t.diskId)] ?? 'delta';
    sizes[nodeOf(run, t.diskId)] = t.sizeBytes;
  }
  let frozen: FrozenPoint;
  try {
    frozen = await quickPs.freezePoint({ machine: source, cycle: s.cycle, modes, sizes, quiesce: false });
  } catch (err) {
    cycleFailed(run, `could not freeze a point in time: ${messageOf(err)}`);
    return undefined;
  }
  for (const change of diskChangesOf(frozen)) alert(run, change.message);
  try {
    const sums = await Promise.all(frozen.disks.map((d) => syncDisk(run, frozen, d)));
    // Every disk has the cycle: the master target's point, the state failback may bring up.
    await mt.commitReversePoint({
      machine: machine.name,
      diskIds: frozen.disks.map((d) => d.diskId),
      cycle: frozen.cycle,
    });
    for (const [i, d] of frozen.disks.entries()) {
      const stats = s.disks.find((x) => nodeOf(run, x.diskId) === d.diskId);
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
    cycleFailed(run, messageOf(err));
    return undefined;
  }
  await CancellationScope.nonCancellable(() =>
    quickPs.releasePoint({ machine: source, pitId: frozen.pitId, success: true }),
  );
  s.cycles += 1;
  s.progress = undefined;
  s.lastApplied = { cycle: frozen.cycle, instant: frozen.instant };
  for (const d of frozen.disks) run.nextMode[d.diskId] = 'delta';
  if (s.state === 'resyncing') setState(run, 'protected');
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

async function syncDisk(run: ReprotectRun, frozen: FrozenPoint, disk: FrozenDisk) {
  const { ps, mt } = run;
  const machine = run.input.machine;
  const target = targetOf(run, disk.diskId);
  const mode = disk.mode;
  const checksumsBlob =
    mode === 'resync'
      ? (await mt.targetChecksums({ machine: machine.name, disk: target, blockBytes: RESYNC_BLOCK_BYTES }))
          .blob
      : undefined;
  let fromIndex = 0;
  const total = { rawBytes: 0, sentBytes: 0 };
  // Loops, not helper functions: an extra await would reorder commands between parallel disks
  // and break the replay of recorded histories.
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
    reportProgress(run, {
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
      const corrupt = segmentsToResend(err, attempt);
      if (!corrupt) throw err;
      alert(
        run,
        `segments ${corrupt.join(', ')} of ${disk.diskId} (reverse cycle ${frozen.cycle}) failed verification and were not applied; sending them again`,
      );
      const resent = await ps.transferDisk(resendRequest(frozen, disk.diskId, mode, corrupt, checksumsBlob));
      total.sentBytes += resent.summary.sentBytes;
    }
  }
  return total;
}

function reportProgress(run: ReprotectRun, p: ReverseProgress): void {
  const { s } = run;
  const progress = [...(s.progress ?? []).filter((x) => x.diskId !== p.diskId), p];
  s.progress = progress;
  if (s.state === 'resyncing') {
    const done = progress.reduce((a, x) => a + x.bytesDone, 0);
    const all = progress.reduce((a, x) => a + x.bytesTotal, 0);
    upsertSearchAttributes([
      { key: OSR_SYNC_PERCENT, value: all === 0 ? 100 : Math.floor((100 * done) / all) },
    ]);
  }
}

function cycleFailed(run: ReprotectRun, reason: string): void {
  run.s.failedCycles += 1;
  run.s.progress = undefined;
  alert(run, `reverse cycle ${run.s.cycle} failed, changes kept for the next cycle: ${reason}`);
}
