// `osr agent resume <id>`: a machine whose writes a planned failover stopped (agent/tracking/stop.ts)
// gets them back, from the process server holding the agent's connection (the resumeAgentWrites
// workflow on that server's queue). A failed or cancelled planned failover does this by itself;
// this is for the one that could not (the agent was away), or after a commit, when the retired
// machine is to run again. Safe to repeat: an agent with no writes stopped says so.
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client/lib/errors';
import { resumeAgentWritesWorkflowId } from '../shared/contracts/resume-agent-writes';
import { agentListenerQueue, CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { getAgent } from './agents';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';

export const resumeAgentWrites = audited(
  'agent.resume',
  async (ctx: ControlContext, id: string): Promise<{ agentId: string; result: string }> => {
    const agent = await getAgent(ctx, id);
    if (agent.state !== 'connected' || !agent.listener)
      throw new OperationError(
        `agent ${agent.id} (${agent.facts.hostname}) is disconnected (last seen ${agent.lastSeenAt ?? 'never'}): its writes stay as they are until it connects. Start its service on the machine (\`/etc/init.d/osr-agent start\` or \`systemctl start osr-agent\`) and resume again`,
        'invalid',
      );
    const client = await ctx.client();
    try {
      const result = await client.workflow.execute('resumeAgentWrites', {
        taskQueue: CONTROL_TASK_QUEUE,
        workflowId: resumeAgentWritesWorkflowId(agent.id),
        args: [{ agentId: agent.id, queue: agentListenerQueue(agent.listener) }],
      });
      return { agentId: agent.id, result: result as string };
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError)
        throw new OperationError(`agent ${agent.id} is being resumed already: wait for it`, 'conflict');
      if (err instanceof WorkflowFailedError) {
        let cause: Error | undefined = err;
        while (cause && (cause as { cause?: Error }).cause) cause = (cause as { cause?: Error }).cause;
        throw new OperationError(`agent ${agent.id}: ${cause?.message ?? err.message}`, 'unavailable');
      }
      throw err;
    }
  },
  (_ctx, id) => ({ target: id }),
);
