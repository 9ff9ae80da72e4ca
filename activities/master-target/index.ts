// Activities of a master target: apply segments to the primary site's disks during failback. The
// site's master-target worker serves them for disks it reaches over NBD; a process server serves
// them too, for the machines whose agents it holds (target-disks.ts).
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { FailbackTarget, FailbackTargetDisk } from '../../shared/failback-types';
import { reverseId } from '../../shared/failback-types';
import type { ProtectedMachine } from '../../shared/replication-types';
import { statePaths } from '../../lib/config/state-paths';
import { deleteCycleSegments } from '../../lib/segments/cycle-cleanup';
import { createStackProbeActivity } from '../common/stack-probe';
import type { DataPathDeps } from '../deps';
import {
  applyReverseCycle,
  commitReversePoint,
  deleteMasterTargetState,
  rollbackIncomplete,
} from './apply-reverse';
import { bringUp } from './bring-up';
import { targetDiskChecksums } from './target-disks';
import { prepareTargets, removeExports, type PrepareTargetsInput } from './targets';
import { daemonStopped, releaseOriginalDomain } from './libvirt-targets';
import { withHeartbeat, type Heartbeat } from '../common/with-heartbeat';

export function createMasterTargetActivities(deps: DataPathDeps) {
  const targetDeps = { workRoot: path.join(statePaths(deps.config).root, 'failback') };
  return {
    probeStorage: createStackProbeActivity('master-target', deps.blobService),

    /** Writable exports of the original disks, or new disks when they are gone. */
    prepareFailbackTargets: (input: PrepareTargetsInput) =>
      withHeartbeat(() => prepareTargets(targetDeps, input)),

    /** Checksums of an original disk in the replica-checksum format, for the diff resync. */
    async targetChecksums(input: { machine: string; disk: FailbackTargetDisk; blockBytes: number }) {
      return withHeartbeat(
        (hb: Heartbeat<{ scanned: number }>) =>
          targetDiskChecksums(
            deps,
            { listId: reverseId(input.machine), disk: input.disk, blockBytes: input.blockBytes },
            (scanned) => hb.beat({ scanned }),
          ),
        { initial: () => ({ scanned: 0 }) },
      );
    },

    /** Verifies and applies one reverse cycle of one disk, journaled (see apply-reverse.ts). */
    async applyReverseCycle(input: { machine: string; disk: FailbackTargetDisk; cycle: number }) {
      const ctx = Context.current();
      let previous: { nextIndex: number } | undefined;
      const summary = await withHeartbeat(
        (hb: Heartbeat<{ nextIndex: number }>) => {
          previous = hb.previous;
          return applyReverseCycle(deps, {
            ...input,
            startIndex: hb.previous?.nextIndex ?? 0,
            onProgress: (nextIndex) => hb.beat({ nextIndex }),
            signal: ctx.cancellationSignal,
          });
        },
        { initial: (prev) => prev ?? { nextIndex: 0 } },
      );
      deps.log.info(
        {
          machine: input.machine,
          disk: input.disk.diskId,
          cycle: input.cycle,
          attempt: ctx.info.attempt,
          resumedAt: previous?.nextIndex ?? 0,
          ...summary,
        },
        'reverse cycle applied',
      );
      return summary;
    },

    deleteReverseCycle: (input: { machine: string; diskId: string; cycle: number }) =>
      withHeartbeat(() =>
        deleteCycleSegments(deps, {
          machine: reverseId(input.machine),
          diskId: input.diskId,
          cycle: input.cycle,
        }),
      ),

    /** Every disk has the cycle: the master target's point (journals of it and older go). */
    commitReversePoint: (input: { machine: string; diskIds: string[]; cycle: number }) =>
      withHeartbeat(() => commitReversePoint(deps, input)),

    rollbackIncomplete: (input: { machine: string; disk: FailbackTargetDisk }) =>
      withHeartbeat(() => rollbackIncomplete(deps, input)),

    /** Failback: the original disks become the machine's again and it resumes. */
    bringUpOriginal: (input: { machine: ProtectedMachine; target: FailbackTarget }) =>
      withHeartbeat(() => bringUp(deps, input)),

    /** Reprotect given up: the master target's exports, journals and points go. */
    releaseFailbackTargets: (input: { machine: string; target: FailbackTarget }) =>
      withHeartbeat(async () => {
        // A retried attempt may find the libvirt original's daemon stopped, its exports with it.
        const removed = (await daemonStopped(input.target)) ? 0 : await removeExports(input.target);
        await releaseOriginalDomain(input.target);
        await deleteMasterTargetState(deps.blobService, input.machine);
        return { exportsRemoved: removed };
      }),

    /** After failback: the reverse direction's cache data and journals are not needed any more. */
    forgetReverseState: (input: { machine: string }) =>
      withHeartbeat(() => deleteMasterTargetState(deps.blobService, input.machine)),
  };
}

export type MasterTargetActivities = ReturnType<typeof createMasterTargetActivities>;
