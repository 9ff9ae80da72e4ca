// protectMachine: the entity workflow of one protected machine. It enables tracking, runs the
// initial sync, then cuts a recovery point every policy interval (delta cycles; app-consistent
// ones on their own frequency), tracks RPO, and keeps its history bounded with continueAsNew.
// All I/O is in activities: only ids, extents counts and small summaries travel here.
// The parts: run.ts (state and small helpers), handlers.ts, cycle.ts (one cycle), sync-disk.ts
// (one disk of a cycle), group-cut.ts (a consistency group's cut), disk-changes.ts.
import { allHandlersFinished, condition, continueAsNew, patched } from '@temporalio/workflow';
import type { MachineStatus, ProtectInput } from '../../shared/contracts/protect-machine';
import { CYCLES_PER_RUN, historyIsLong as historyBudgetSpent } from '../lib/history';
import { followAgent } from './agent-routing';
import { cycle } from './cycle';
import { groupCycle } from './group-cut';
import { setHandlers } from './handlers';
import {
  checkRpo,
  failPointRequests,
  pendingPoints,
  raise,
  rpoCheckMs,
  setState,
  startRun,
  status,
  type ProtectRun,
} from './run';

/** patched() id: a new protection clears the machine's cycles from the cache first (older runs did not). */
const PATCH_FRESH_CACHE = 'fresh-cache';

export async function protectMachine(input: ProtectInput): Promise<MachineStatus> {
  const run = startRun(input);
  const { s, machine } = run;
  setHandlers(run);

  if (s.state === 'enabling') await enable(run);

  // --- the replication loop --------------------------------------------------------------
  // A function, not an inline comparison: handlers change the state while the loop awaits.
  const disabling = () => s.state === 'disabling';
  const historyIsLong = () => historyBudgetSpent(run.cyclesThisRun, input.maxCyclesPerRun ?? CYCLES_PER_RUN);
  while (s.state !== 'disabled') {
    if (s.state === 'disabling') {
      await disable(run);
      break;
    }
    if (run.pendingCut) {
      const cut = run.pendingCut;
      run.pendingCut = undefined;
      await groupCycle(run, cut);
      continue;
    }
    if (historyIsLong()) {
      // Keep the history bounded: hand the state to a fresh run once every handler has finished.
      // A point requested meanwhile is cut first, so its caller is not left waiting; so is a
      // group cut, so the group is not left waiting either.
      await condition(
        () => allHandlersFinished() || pendingPoints(run) || disabling() || run.pendingCut !== undefined,
      );
      if (disabling() || run.pendingCut) continue;
      if (!pendingPoints(run)) {
        await continueAsNew<typeof protectMachine>({
          machine,
          policy: s.policy,
          carried: s,
          maxCyclesPerRun: input.maxCyclesPerRun,
        });
      }
    }
    if (s.state === 'paused') {
      failPointRequests(run, `machine ${machine.name} is paused`);
      // RPO keeps growing while paused: keep checking it, so the alert comes when it should.
      await condition(() => s.state !== 'paused' || historyIsLong(), rpoCheckMs(run));
      checkRpo(run);
      continue;
    }
    // A group member's points are timed by its group; it still syncs and serves requests itself.
    const due = s.group ? Infinity : (s.lastCycleAt ?? 0) + s.policy.crashPointSeconds * 1000;
    const needsSync = s.disks.some((d) => !d.excluded && d.nextMode !== 'delta');
    // Cycles that keep failing wait out their backoff (a point asked for tries at once), so a
    // source that fails fast does not spin thousands of cycles and alerts.
    const backoffMs = s.failing ? s.failing.retryAt - Date.now() : 0;
    if (backoffMs > 0 && !pendingPoints(run)) {
      run.wake = false;
      await condition(
        () => run.wake || run.pendingCut !== undefined,
        Math.max(1, Math.min(backoffMs, rpoCheckMs(run))),
      );
      checkRpo(run);
      continue;
    }
    if (needsSync || pendingPoints(run) || Date.now() >= due) {
      s.lastCycleAt = Date.now();
      await cycle(run);
      continue;
    }
    run.wake = false;
    await condition(() => run.wake, Math.max(1, Math.min(due - Date.now(), rpoCheckMs(run))));
    checkRpo(run);
  }
  return status(run);
}

/** Finds the machine's disks and starts tracking their changes; the initial sync comes next. */
async function enable(run: ProtectRun): Promise<void> {
  await followAgent(run);
  const { s, machine, quickPs, applier } = run;
  // Cycle numbers start at 1 again: an earlier protection of this machine that kept its replica
  // (unprotect --keep-replica, failover then re-enable) may have left a failed cycle in the cache
  // under one of them, and its plan would be taken for the new cycle's (the wrong blocks sent).
  const [found] = await Promise.all([
    quickPs.discoverDisks({ machine }),
    patched(PATCH_FRESH_CACHE) ? applier.clearCycleCache({ machine: machine.name }) : undefined,
  ]);
  const tracking = await quickPs.enableTracking({ machine, diskIds: found.disks.map((d) => d.diskId) });
  s.disks = found.disks.map((d) => ({
    diskId: d.diskId,
    sizeBytes: d.sizeBytes,
    synced: false,
    nextMode: 'full',
  }));
  for (const diskId of tracking.volatileDisks) {
    raise(
      run,
      'tracking-volatile',
      'warning',
      `${diskId} is not qcow2, so its change tracking lives only in memory: a restart of the VM or storage daemon forces a resync (checksums of every block). Convert the disk to qcow2 to avoid it.`,
      diskId,
    );
  }
  setState(run, 'initial-sync');
}

async function disable(run: ProtectRun): Promise<void> {
  failPointRequests(run, `machine ${run.machine.name} is being disabled`);
  await followAgent(run);
  await run.quickPs.disableTracking({ machine: run.machine });
  if (!run.keepReplica) await run.applier.deleteReplica({ machine: run.machine.name });
  setState(run, 'disabled');
}
