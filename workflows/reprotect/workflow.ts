// reprotect: replicates a failed-over machine from the recovery site back onto its original disks
// in the primary site. The recovery site's process-server role reads the failed-over machine (the
// materialized qemu-storage-daemon: same CBT connector, dirty bitmaps, block pipeline, osr-cache);
// the primary site's master target verifies each segment as the cloud applier does and writes it
// to the original disks through NBD, journaled so that its last fully applied cycle is a point.
// First cycle: a diff resync (checksums of the original disks, only differing blocks cross), or a
// full copy into new disks when the originals are gone; then a delta cycle every interval, until
// failback asks for a final cycle (finalCycle) or the operator stops it (stopReprotect).
// The parts: run.ts (state and small helpers), cycle.ts (one reverse cycle and its disks).
import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  setHandler,
} from '@temporalio/workflow';
import {
  finalCycleUpdate,
  reprotectStatusQuery,
  stopReprotectUpdate,
  type FinalCycleResult,
  type ReprotectInput,
  type ReprotectStatus,
} from '../../shared/contracts/reprotect';
import { FAILURE } from '../../shared/failures';
import { CYCLES_PER_RUN, historyIsLong as historyBudgetSpent } from '../lib/history';
import { forgetReverseSource, reverseCleanupPatched } from '../lib/reverse-cleanup';
import { cycle } from './cycle';
import { nodeOf, routeMasterTarget, setState, startRun, targetOf, type ReprotectRun } from './run';

export async function reprotect(input: ReprotectInput): Promise<ReprotectStatus> {
  const run = startRun(input);
  const { s } = run;
  const { machine, source } = input;
  const { quickPs } = run;
  setHandlers(run);
  await routeMasterTarget(run);

  // --- prepare: the failed-over disks, change tracking, the original disks ----------------
  if (s.state === 'preparing') {
    const found = await quickPs.discoverDisks({ machine: source });
    await quickPs.enableTracking({ machine: source, diskIds: found.disks.map((d) => d.diskId) });
    const originalOf = (node: string) => Object.entries(input.nodes).find(([, n]) => n === node)?.[0] ?? node;
    s.target = await run.mt.prepareFailbackTargets({
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
    setState(run, 'resyncing');
  }
  if (s.state === 'resyncing') {
    for (const t of s.target?.disks ?? [])
      run.nextMode[nodeOf(run, t.diskId)] = t.existed ? 'resync' : 'full';
  }

  const historyIsLong = () => historyBudgetSpent(run.cyclesThisRun, input.maxCyclesPerRun ?? CYCLES_PER_RUN);

  while (s.state !== 'synced' && s.state !== 'stopped') {
    if (run.stopRequested) {
      await CancellationScope.nonCancellable(async () => {
        // The original disks go back to the master target's last point (before the resync when
        // none was committed): a stopped reprotect never leaves them half-written.
        for (const t of s.target?.disks ?? [])
          await run.mt.rollbackIncomplete({
            machine: machine.name,
            disk: targetOf(run, nodeOf(run, t.diskId)),
          });
        if (s.target) await run.mt.releaseFailbackTargets({ machine: machine.name, target: s.target });
        await quickPs.disableTracking({ machine: source }).catch(() => undefined);
        // A recovered QEMU daemon runs on and may keep its NBD server's socket in the work folder.
        if (source.source.type === 'libvirt' && reverseCleanupPatched())
          await forgetReverseSource(quickPs, source);
      });
      setState(run, 'stopped');
      break;
    }
    if (historyIsLong() && !run.finalRequested) {
      await condition(() => allHandlersFinished() || run.finalRequested || run.stopRequested);
      if (!run.finalRequested && !run.stopRequested)
        await continueAsNew<typeof reprotect>({ ...input, carried: s });
      continue;
    }
    // After a failed cycle the next one waits an interval too, resync or not.
    const due = run.lastCycleAt + input.intervalSeconds * 1000;
    const syncing = s.state === 'resyncing' && !run.lastFailed;
    if (run.finalRequested || syncing || Date.now() >= due) {
      const wasFinal = run.finalRequested && s.state === 'protected';
      if (wasFinal) setState(run, 'final-cycle');
      run.lastCycleAt = Date.now();
      const done = await cycle(run);
      run.lastFailed = done === undefined;
      if (wasFinal) {
        if (done) {
          run.finalResult = { cycle: done.cycle, instant: done.instant, disks: s.disks };
          setState(run, 'synced');
        } else {
          run.finalFailed = `the final cycle ${s.cycle} of ${machine.name} failed: ${s.alerts[s.alerts.length - 1]?.message ?? ''}`;
          run.finalRequested = false;
          setState(run, 'protected');
        }
      }
      continue;
    }
    run.wake = false;
    await condition(() => run.wake, Math.max(1, due - Date.now()));
  }
  // Answer the last updates before completing.
  await condition(allHandlersFinished);
  return s;
}

function setHandlers(run: ReprotectRun): void {
  const { s } = run;
  const machine = run.input.machine;
  setHandler(reprotectStatusQuery, () => s);
  setHandler(
    finalCycleUpdate,
    async () => {
      run.finalRequested = true;
      run.finalFailed = undefined;
      run.wake = true;
      await condition(() => run.finalResult !== undefined || run.finalFailed !== undefined);
      if (run.finalFailed)
        throw ApplicationFailure.create({
          type: FAILURE.FinalCycleFailed,
          message: run.finalFailed,
          nonRetryable: true,
        });
      return run.finalResult as FinalCycleResult;
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
      run.stopRequested = true;
      run.wake = true;
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
}
