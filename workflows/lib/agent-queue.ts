// Where an agent machine's process-server work goes: the queue of the process server whose
// listener holds the agent's connection (the vault's record of it), or the machine's own queue
// when the agent is not connected (the work then fails there and says so). Failback into an agent
// machine has its master target there too.
import { patched, proxyActivities } from '@temporalio/workflow';
import type { ControlActivities } from '../../activities/control';
import type { ProtectedMachine } from '../../shared/replication-types';
import { CONTROL_TASK_QUEUE, agentMasterTargetQueue, masterTargetQueue } from '../../shared/task-queues';
import { processServerQueueOf } from './host-queue';

const control = proxyActivities<Pick<ControlActivities, 'agentQueue'>>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 5 },
});

export async function agentHolderQueue(machine: ProtectedMachine, agentId: string): Promise<string> {
  return (await control.agentQueue({ agentId })) ?? processServerQueueOf(machine);
}

/**
 * The master target of a failback into `machine`: the site's, or for a machine with the Mobility
 * agent, the one in the process server holding the agent (the site's while the agent is not
 * connected: its work fails there, retried, until it is). Gated: before it, an agent machine's
 * reprotect went to the site's master target (which refused it).
 */
export async function masterTargetQueueOf(machine: ProtectedMachine): Promise<string> {
  return masterTargetQueueFor(
    machine.site,
    machine.source.type === 'agent' ? machine.source.agentId : undefined,
  );
}

/** masterTargetQueueOf for a machine of `site` whose agent is `agentId` (none: not an agent machine). */
export async function masterTargetQueueFor(site: string, agentId: string | undefined): Promise<string> {
  if (!agentId || !patched('agent-failback')) return masterTargetQueue(site);
  const holder = await control.agentQueue({ agentId });
  return holder ? agentMasterTargetQueue(holder) : masterTargetQueue(site);
}
