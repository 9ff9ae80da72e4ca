// Activities of a process server: reach the source machine's disks (QMP + NBD), freeze points in
// time, read changed extents, run them through the block pipeline and upload segments.
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { ProtectedMachine } from '../../shared/replication-types';
import { statePaths } from '../../lib/config/state-paths';
import { createStackProbeActivity } from '../common/stack-probe';
import type { DataPathDeps } from '../deps';
import { BandwidthLimits } from './bandwidth';
import { readSiteShare } from './site-share';
import { transferDisk, type TransferDiskInput, type TransferSlice } from './transfer-disk';
import * as source from './machine-source';
import { resumeSourceWrites, stopSourceWrites } from './stop-writes';
import { resumeAgentWrites } from '../../lib/sources/agent-source';
import { forgetReverseSource } from './forget-reverse';
import { probeSource, type ProbeSourceInput } from './probe-source';
import { discoverHost, type DiscoverHostInput } from './discover-host';
import { barrierMethod, holdWrites, releaseWrites } from './write-barrier';
import type { HeldMachine } from '../../shared/group-types';
import { storageFailure } from '../common/storage-failure';
import { keepAlive, withHeartbeat, type Heartbeat } from '../common/with-heartbeat';
import { IntakeGate } from '../../lib/segments/intake-gate';
import { withStorageWatch, hasTrouble } from '../../lib/azure/storage-health';
import { createAgentUpgradeActivities } from './agent-upgrade';
import { agentStoreAlerts } from '../../lib/agents/registry';

export function createProcessServerActivities(deps: DataPathDeps) {
  const sourceDeps = { workRoot: path.join(statePaths(deps.config).machines) };
  // The spool bound of this process (see intake-gate.ts): the same size as the pipeline's.
  const intake = new IntakeGate(deps.config.pipeline.maxBytesInFlight, {
    onPause: (s) =>
      deps.log.warn(
        { heldBytes: s.heldBytes, capacityBytes: s.capacityBytes, waiting: s.waiting },
        'intake paused: the spool is full (segments read and not yet stored); reads wait for uploads',
      ),
    onResume: (s, pausedMs) =>
      deps.log.info({ pausedMs, heldBytes: s.heldBytes, pauses: s.pauses }, 'intake resumed'),
  });
  const limits = new BandwidthLimits(deps.vault, async () => {
    const share = await readSiteShare(deps.vault, deps.config);
    return share.bitsPerSecond;
  });
  return {
    probeStorage: createStackProbeActivity('process-server', deps.blobService),

    /** `osr protect`: is the --qmp path a QMP monitor, seen from the machine's host? */
    probeSource: (input: ProbeSourceInput) => probeSource(input, sourceDeps),

    /** `osr host add` / `osr discover`: the machines of a host this process server serves. */
    discoverHost: (input: DiscoverHostInput) => discoverHost(input),

    // The source steps heartbeat on a timer: a killed process server shows within the workflows'
    // short heartbeat timeout, and its step goes to the restarted (or another) one, instead of
    // waiting out the step's whole start-to-close timeout.
    discoverDisks: keepAlive((input: { machine: ProtectedMachine }) =>
      source.discoverDisks(sourceDeps, input.machine),
    ),

    enableTracking: keepAlive((input: { machine: ProtectedMachine; diskIds: string[] }) =>
      source.enableTracking(sourceDeps, input.machine, input.diskIds),
    ),

    freezePoint: keepAlive(async (input: source.FreezeInput) => {
      const frozen = await source.freezePoint(sourceDeps, input);
      const agent = input.machine.source.type === 'agent' ? input.machine.source.agentId : undefined;
      if (!agent) return frozen;
      // Unread (the vault did not answer): none reported, so the workflow keeps what it has.
      const alerts = await agentStoreAlerts(deps.vault, agent, deps.config.agents);
      if (!alerts) return frozen;
      const storeAlerts = alerts.map((a) => ({
        kind: a.kind,
        severity: a.severity,
        message: a.message,
        subject: agent,
      }));
      return { ...frozen, storeAlerts };
    }),

    releasePoint: keepAlive((input: { machine: ProtectedMachine; pitId: string; success: boolean }) =>
      source.releasePoint(sourceDeps, input.machine, input.pitId, input.success),
    ),

    disableTracking: keepAlive((input: { machine: ProtectedMachine }) =>
      source.disableTracking(sourceDeps, input.machine),
    ),

    /** Reverse replication over: its work and export folders on this host go. */
    forgetReverseSource: (input: { machine: ProtectedMachine }) =>
      forgetReverseSource(sourceDeps, input.machine),

    /** Consistency groups: can this machine's writes be held? (Fails, non-retryable, saying why not.) */
    checkWriteBarrier: keepAlive(async (input: { machine: ProtectedMachine }) => ({
      method: await barrierMethod(input.machine),
    })),
    holdWrites: keepAlive((input: { machines: ProtectedMachine[] }) => holdWrites(input.machines)),
    releaseWrites: keepAlive((input: { machines: ProtectedMachine[]; held: HeldMachine[] }) =>
      releaseWrites(input.machines, input.held),
    ),

    /** `osr agent upgrade`: stage and verify, then switch (the agent's connection is here). */
    ...createAgentUpgradeActivities({ bundleDir: deps.config.agents.bundleDir, log: deps.log }),

    /** Before a planned failover: no more writes at the source. */
    stopSourceWrites: keepAlive((input: { machine: ProtectedMachine }) => stopSourceWrites(input.machine)),
    /** A failed or cancelled planned failover: the source's writes back (an agent machine's). */
    resumeSourceWrites: keepAlive((input: { machine: ProtectedMachine }) =>
      resumeSourceWrites(input.machine),
    ),
    /** `osr agent resume`: the agent's stopped writes back (its connection is here). */
    resumeAgentWrites: (input: { agentId: string }) => resumeAgentWrites(input.agentId),

    async transferDisk(input: TransferDiskInput): Promise<TransferSlice> {
      const ctx = Context.current();
      // Heartbeat on a timer too: listing extents or a slow upload must not look like a dead worker.
      // Storage trouble (throttling, time-outs) is retried by the SDK and reported to the workflow:
      // in the result when the slice got through, as a StorageUnavailable failure when it did not.
      const watched = await withHeartbeat(
        (hb: Heartbeat<{ nextIndex: number }>) =>
          withStorageWatch(() =>
            transferDisk(
              {
                blobService: deps.blobService,
                pipeline: deps.pipeline,
                uploadConcurrency: deps.config.pipeline.uploadConcurrency,
                heartbeat: (next) => hb.beat(next),
                resumeCursor: hb.previous,
                isCancelled: () => ctx.cancellationSignal.aborted,
                intake,
                throttle: (machine, bytes) => limits.take(machine, bytes),
              },
              input,
            ),
          ).catch((err: unknown) => {
            throw storageFailure(
              err,
              `sending ${input.diskId} of ${input.point.machine} to the cache`,
              hb.cursor?.nextIndex,
              input.reportStorageFaults === true,
            );
          }),
        { initial: (prev) => prev ?? { nextIndex: input.fromIndex } },
      );
      const slice = hasTrouble(watched.trouble)
        ? { ...watched.result, storage: watched.trouble }
        : watched.result;
      deps.log.info(
        {
          machine: input.point.machine,
          disk: input.diskId,
          cycle: input.point.cycle,
          attempt: ctx.info.attempt,
          resumed: slice.summary.resumedSegments,
          uploaded: slice.summary.uploadedSegments,
          sentBytes: slice.summary.sentBytes,
        },
        'transfer slice done',
      );
      return slice;
    },
  };
}

export type ProcessServerActivities = ReturnType<typeof createProcessServerActivities>;
