// Activities of the cloud applier: verify and apply segments to replica page blobs, publish
// recovery points as blob snapshots, prune by retention, compute replica checksums for resyncs.
import { Context } from '@temporalio/activity';
import { CONTAINERS } from '../shared/storage';
import type { ReplicationPolicy } from '../shared/replication-types';
import { applyCycle } from './applier/apply-cycle';
import { deleteCycleSegments } from './applier/cycle-cleanup';
import type { CycleRef } from './applier/cycle-layout';
import { publishPoint, type PublishPointInput } from './applier/publish-point';
import { replicaChecksums, type ReplicaChecksumsInput } from './applier/replica-checksums';
import { deleteReplica, ensureReplicaDisk, type ReplicaDiskInput } from './applier/replica-disk';
import { pruneRetention } from './applier/retention';
import { createStackProbeActivity } from './common/stack-probe';
import type { DataPathDeps } from './deps';

export function createCloudApplierActivities(deps: DataPathDeps) {
  return {
    probeStorage: createStackProbeActivity('cloud-applier', deps.blobService),

    ensureReplicaDisk: (input: ReplicaDiskInput) => ensureReplicaDisk(deps, input),

    async applyCycle(input: CycleRef) {
      const ctx = Context.current();
      const previous = ctx.info.heartbeatDetails as { nextIndex: number } | undefined;
      // onProgress fires only when every segment below an index is written: heartbeat on a timer too.
      let cursor = previous ?? { nextIndex: 0 };
      const timer = setInterval(() => ctx.heartbeat(cursor), 5000);
      const summary = await applyCycle(deps, {
        ...input,
        startIndex: cursor.nextIndex,
        onProgress: (nextIndex) => {
          cursor = { nextIndex };
          ctx.heartbeat(cursor);
        },
        signal: ctx.cancellationSignal,
      }).finally(() => clearInterval(timer));
      deps.log.info(
        { ...input, attempt: ctx.info.attempt, resumedAt: previous?.nextIndex ?? 0, ...summary },
        'cycle applied',
      );
      return summary;
    },

    publishPoint: (input: PublishPointInput) => publishPoint(deps, input),

    deleteCycleSegments: (input: CycleRef) => deleteCycleSegments(deps, input),

    // The activity's own clock, not the workflow's: retention is about wall time in storage.
    pruneRetention: (input: { machine: string; policy: ReplicationPolicy }) =>
      pruneRetention(deps, { machine: input.machine, policy: input.policy, now: new Date() }),

    async replicaChecksums(input: ReplicaChecksumsInput) {
      const ctx = Context.current();
      const timer = setInterval(() => ctx.heartbeat(), 5000);
      try {
        return await replicaChecksums(deps, input);
      } finally {
        clearInterval(timer);
      }
    },

    /** Removes a machine's replica disks with their snapshots, and its leftover cycles in the cache. */
    async deleteReplica(input: { machine: string }) {
      const blobs = await deleteReplica(deps, input.machine);
      const cache = deps.blobService.getContainerClient(CONTAINERS.cache);
      for await (const item of cache.listBlobsFlat({ prefix: `${input.machine}/` }))
        await cache.deleteBlob(item.name).catch(() => undefined);
      return { blobs };
    },
  };
}

export type CloudApplierActivities = ReturnType<typeof createCloudApplierActivities>;
