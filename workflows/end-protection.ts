// endProtection: the cleanup `osr unprotect` runs for a machine whose protectMachine workflow ended
// outside OSR (cancelled, terminated, failed or timed out from the Temporal UI or CLI), so it cannot
// do its own `disable`. The same activities as protectMachine's disable: remove the source's dirty
// bitmaps (best effort: the source may be gone, and then there is nothing to remove on it) and,
// unless the replica is kept, delete the replica disks. An agent machine's tracking is removed by
// the process server holding its agent's connection, as protectMachine's disable does; runs
// started before went to the machine's queue and replay so (patched 'end-protection-agent-routing',
// written only for agent machines).
import { patched, proxyActivities } from '@temporalio/workflow';
import type { CloudApplierActivities } from '../activities/cloud-applier';
import type { ProcessServerActivities } from '../activities/process-server';
import { FAILURE } from '../shared/failures';
import type { EndProtectionInput, EndProtectionResult } from '../shared/contracts/end-protection';
import { CLOUD_APPLIER_TASK_QUEUE } from '../shared/task-queues';
import { messageOf } from './lib/failures';
import { WORKER_HEARTBEAT_TIMEOUT } from './lib/liveness';
import { agentHolderQueue } from './lib/agent-queue';
import { processServerQueueOf } from './lib/host-queue';

export const PATCH_END_PROTECTION_AGENT_ROUTING = 'end-protection-agent-routing';

export async function endProtection(input: EndProtectionInput): Promise<EndProtectionResult> {
  const { machine } = input;
  const ps = proxyActivities<ProcessServerActivities>({
    taskQueue: await sourceQueue(machine),
    scheduleToStartTimeout: '1m',
    startToCloseTimeout: '1m',
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: { initialInterval: '1s', maximumAttempts: 3, nonRetryableErrorTypes: [FAILURE.SourceError] },
  });
  const applier = proxyActivities<CloudApplierActivities>({
    taskQueue: CLOUD_APPLIER_TASK_QUEUE,
    startToCloseTimeout: '30m',
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 20 },
  });
  const notes: string[] = [];
  let trackingRemoved = false;
  try {
    await ps.disableTracking({ machine });
    trackingRemoved = true;
  } catch (err) {
    notes.push(`the source's change tracking was not removed: ${messageOf(err)}`);
  }
  let replicaDeleted = false;
  if (!input.keepReplica) {
    await applier.deleteReplica({ machine: machine.name });
    replicaDeleted = true;
  }
  return { trackingRemoved, replicaDeleted, notes };
}

/** The queue of the work on the machine's source (on another process server, its agent is not there). */
async function sourceQueue(machine: EndProtectionInput['machine']): Promise<string> {
  const source = machine.source;
  if (source.type !== 'agent' || !patched(PATCH_END_PROTECTION_AGENT_ROUTING))
    return processServerQueueOf(machine);
  // The vault not answering: the machine's queue, where the removal may still find the agent.
  return agentHolderQueue(machine, source.agentId).catch(() => processServerQueueOf(machine));
}
