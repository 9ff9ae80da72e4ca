// Where an agent machine's process-server work goes: the queue of the process server whose
// listener holds the agent's connection (the vault's record of it), or the machine's own queue
// when the agent is not connected (the work then fails there and says so).
import { proxyActivities } from '@temporalio/workflow';
import type { ControlActivities } from '../../activities/control';
import type { ProtectedMachine } from '../../shared/replication-types';
import { CONTROL_TASK_QUEUE } from '../../shared/task-queues';
import { processServerQueueOf } from './host-queue';

export async function agentHolderQueue(machine: ProtectedMachine, agentId: string): Promise<string> {
  const control = proxyActivities<Pick<ControlActivities, 'agentQueue'>>({
    taskQueue: CONTROL_TASK_QUEUE,
    startToCloseTimeout: '30s',
    retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 5 },
  });
  return (await control.agentQueue({ agentId })) ?? processServerQueueOf(machine);
}
