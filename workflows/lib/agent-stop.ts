// Planned failover of a machine protected through the Mobility agent: the agent suspends the
// machine's disks until the failover ends. Its stop, and the resume that gives the writes back when
// the failover fails or is cancelled, go to the process server holding the agent's connection
// (looked up in the vault, as the machine's cycles are). Runs recorded before replay as they ran:
// the stop on the machine's queue and no resume (patched 'agent-planned-failover', written only
// for planned failovers of agent machines).
import { patched, proxyActivities } from '@temporalio/workflow';
import type { ProcessServerActivities } from '../../activities/process-server';
import type { ProtectedMachine } from '../../shared/replication-types';
import { agentHolderQueue } from './agent-queue';
import { WORKER_HEARTBEAT_TIMEOUT } from './liveness';

export const PATCH_AGENT_PLANNED_FAILOVER = 'agent-planned-failover';

export type WriteStopper = Pick<ProcessServerActivities, 'stopSourceWrites' | 'resumeSourceWrites'>;

/**
 * The activities stopping and resuming an agent machine's writes; undefined for other machines.
 * Wrapped in an object: a promise resolved with an activity proxy would ask it for `then`.
 */
export async function agentWriteStopper(
  machine: ProtectedMachine,
): Promise<{ ps: WriteStopper } | undefined> {
  const source = machine.source;
  if (source.type !== 'agent' || !patched(PATCH_AGENT_PLANNED_FAILOVER)) return undefined;
  const queue = await agentHolderQueue(machine, source.agentId);
  const ps = proxyActivities<WriteStopper>({
    taskQueue: queue,
    // The holder gone: fail soon (the stop) or say so (the resume), not wait for a poller.
    scheduleToStartTimeout: '1m',
    startToCloseTimeout: '2m',
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 3 },
  });
  return { ps };
}
