// Agent machines: their process-server work goes to the process server whose listener holds the
// agent's connection (its own queue, agentListenerQueue), looked up before each enable, cycle and
// disable, so it follows the agent when it reconnects elsewhere. Before this, it went to the
// site's queue and a cycle that landed on another process server failed as unreachable; runs
// recorded then replay on that path (patched 'agent-routing').
import { log, patched, proxyActivities } from '@temporalio/workflow';
import type { ControlActivities } from '../../activities/control';
import { CONTROL_TASK_QUEUE } from '../../shared/task-queues';
import { processServerQueueOf } from '../lib/host-queue';
import { activities, type ProtectRun } from './run';

export const PATCH_AGENT_ROUTING = 'agent-routing';

const control = () =>
  proxyActivities<Pick<ControlActivities, 'agentQueue'>>({
    taskQueue: CONTROL_TASK_QUEUE,
    startToCloseTimeout: '30s',
    retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 5 },
  });

export async function followAgent(run: ProtectRun): Promise<void> {
  const source = run.machine.source;
  if (source.type !== 'agent' || !patched(PATCH_AGENT_ROUTING)) return;
  let queue: string;
  try {
    queue = (await control().agentQueue({ agentId: source.agentId })) ?? processServerQueueOf(run.machine);
  } catch {
    return; // the vault did not answer: the last queue stays, the cycle finds out
  }
  if (queue === run.queue) return;
  log.info('agent machine routed', {
    machine: run.machine.name,
    agentId: source.agentId,
    from: run.queue,
    queue,
  });
  const routed = activities(queue, queue !== processServerQueueOf(run.machine));
  run.queue = routed.queue;
  run.ps = routed.ps;
  run.quickPs = routed.quickPs;
}
