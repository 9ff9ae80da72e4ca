// Activities of the cloud applier: verify and apply segments to replica page blobs, publish
// recovery points as blob snapshots, prune by retention, compute replica checksums for resyncs;
// and in the recovery site, build the disks of drills and failovers from recovery points.
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { RecoveredMachine } from '../../shared/recovery-types';
import type { ReplicationPolicy } from '../../shared/replication-types';
import { statePaths } from '../../lib/config/state-paths';
import { applyCycle } from './apply-replica';
import { createAzureTargetActivities } from './azure-target';
import { createLibvirtTargetActivities, removeRecoveredDomain, stopRecoveredDomain } from './libvirt-target';
import { runBootCheck, servedExports, type BootCheckInput } from './boot-check';
import { dematerialize, materialize, materializedDir, type MaterializeInput } from './materialize';
import {
  createRecoveredDisks,
  deleteRecoveredDisks,
  recordRecoveredMachine,
  removeRecoveredRecord,
  type RecoveredDisksInput,
} from './recovered-disks';
import { deleteCycleSegments } from '../../lib/segments/cycle-cleanup';
import type { CycleRef } from '../../lib/segments/cycle-layout';
import { publishPoint, type PublishPointInput } from './publish-point';
import { replicaChecksums, type ReplicaChecksumsInput } from './replica-checksums';
import { deleteBlobsUnder, deleteReplica, ensureReplicaDisk, type ReplicaDiskInput } from './replica-disk';
import { pruneRetention } from './retention';
import { createStackProbeActivity } from '../common/stack-probe';
import { stopStorageDaemon } from '../../lib/qemu/storage-daemon';
import type { DataPathDeps } from '../deps';
import { guardStorage, watchStorage, type ReportsStorageFaults } from '../common/storage-failure';
import { keepAlive, keepAllAlive, withHeartbeat, type Heartbeat } from '../common/with-heartbeat';
import type { AppliedPart } from '../common/apply-cycle';

export function createCloudApplierActivities(deps: DataPathDeps) {
  const clearCache = (machine: string) =>
    deleteBlobsUnder(deps.blobService.getContainerClient(CONTAINERS.cache), `${machine}/`);
  return {
    probeStorage: createStackProbeActivity('cloud-applier', deps.blobService),

    // Every activity protectMachine runs here heartbeats (keepAlive or withHeartbeat): the
    // workflow gives them a 10-s heartbeat timeout (workflows/lib/liveness.ts).
    ensureReplicaDisk: keepAlive((input: ReplicaDiskInput & ReportsStorageFaults) =>
      watchStorage(input, `preparing the replica of ${input.machine}/${input.diskId}`, () =>
        ensureReplicaDisk(deps, input),
      ),
    ),

    // follow + sizeBytes: an apply that starts with the transfer and follows the upload (see
    // ApplyCycleInput); a retry resumes from the heartbeated index.
    async applyCycle(input: CycleRef & AppliedPart & ReportsStorageFaults) {
      const ctx = Context.current();
      const previous = ctx.info.heartbeatDetails as { nextIndex: number } | undefined;
      // onProgress fires only when every segment below an index is written: heartbeat on a timer too.
      const summary = await withHeartbeat(
        (hb: Heartbeat<{ nextIndex: number }>) =>
          watchStorage(input, `applying cycle ${input.cycle} of ${input.machine}/${input.diskId}`, () =>
            applyCycle(deps, {
              ...input,
              startIndex: previous?.nextIndex ?? 0,
              onProgress: (nextIndex) => hb.beat({ nextIndex }),
              signal: ctx.cancellationSignal,
            }),
          ),
        { initial: (prev) => prev ?? { nextIndex: 0 } },
      );
      deps.log.info(
        { ...input, attempt: ctx.info.attempt, resumedAt: previous?.nextIndex ?? 0, ...summary },
        'cycle applied',
      );
      return summary;
    },

    publishPoint: keepAlive((input: PublishPointInput & ReportsStorageFaults) =>
      guardStorage(input, `publishing point ${input.pointId} of ${input.machine}`, () =>
        publishPoint(deps, input),
      ),
    ),

    deleteCycleSegments: keepAlive((input: CycleRef) => deleteCycleSegments(deps, input)),

    // The activity's own clock, not the workflow's: retention is about wall time in storage.
    pruneRetention: keepAlive((input: { machine: string; policy: ReplicationPolicy }) =>
      pruneRetention(deps, { machine: input.machine, policy: input.policy, now: new Date() }),
    ),

    replicaChecksums: (input: ReplicaChecksumsInput) => withHeartbeat(() => replicaChecksums(deps, input)),

    /** Removes a machine's replica disks with their snapshots, and its leftover cycles in the cache. */
    deleteReplica: keepAlive(async (input: { machine: string }) => {
      const blobs = await deleteReplica(deps, input.machine);
      await clearCache(input.machine);
      return { blobs };
    }),

    /**
     * Removes a machine's cycles from the cache, before a new protection counts cycles from 1 again
     * (what an earlier protection that kept its replica left there must not be taken for them).
     */
    clearCycleCache: keepAlive(async (input: { machine: string }) => ({
      blobs: (await clearCache(input.machine)).length,
    })),

    ...createRecoveryActivities(deps),
  };
}

/** Activities that build, boot and remove recovered machines (drills and failovers). */
export function createRecoveryActivities(deps: DataPathDeps) {
  const stateDir = statePaths(deps.config).root;
  // Drills, failovers and their clean-ups give these the workers' 10-s heartbeat timeout: each
  // heartbeats on the 2-s timer, so a killed applier's step is handed on within seconds.
  return keepAllAlive({
    createRecoveredDisks: (input: Omit<RecoveredDisksInput, 'onDisk'>) => createRecoveredDisks(deps, input),

    deleteRecoveredDisks: (input: Pick<RecoveredDisksInput, 'kind' | 'machine' | 'job'>) =>
      deleteRecoveredDisks(deps, input),

    recordRecoveredMachine: (record: RecoveredMachine) => recordRecoveredMachine(deps, record),

    removeRecoveredRecord: (input: { machine: string; job: string }) => removeRecoveredRecord(deps, input),

    materializeRecovered: (input: MaterializeInput) =>
      materialize({ blobService: deps.blobService, stateDir }, input),

    /** The recovery-site copy goes: its daemon, or the libvirt domain the recovery made, then its files. */
    dematerializeRecovered: async (input: { machine: string; job: string }) => {
      await removeRecoveredDomain(deps.vault, input.machine, input.job);
      await dematerialize({ dir: materializedDir(stateDir, input.machine, input.job) });
    },

    /** Failback: the recovery-site copy stops (its files, and a libvirt domain's definition, stay until re-enable). */
    stopRecoveredDaemon: async (input: { machine: string; job: string }) =>
      (await stopRecoveredDomain(deps.vault, input.machine, input.job)).length > 0 ||
      (await stopStorageDaemon(materializedDir(stateDir, input.machine, input.job))),

    runBootCheck: async (input: Omit<BootCheckInput, 'pidFile' | 'nbd'> & { job: string }) =>
      runBootCheck(
        {
          ...input,
          nbd: await servedExports(materializedDir(stateDir, input.machine, input.job), input.disks),
          pidFile: path.join(stateDir, 'recovered', `${input.machine}-${input.job}.boot.pid`),
        },
        Context.current().cancellationSignal,
      ),

    ...createAzureTargetActivities(deps),
    ...createLibvirtTargetActivities(deps),
  });
}

export type RecoveryActivities = ReturnType<typeof createRecoveryActivities>;

export type CloudApplierActivities = ReturnType<typeof createCloudApplierActivities>;
