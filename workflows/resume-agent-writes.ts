// resumeAgentWrites: `osr agent resume`. The process server holding the agent's connection asks
// it to let the writes a planned failover stopped go (a failover that could not do it itself, or
// a committed one whose source machine is to run again). One attempt: the operator sees why not.
import { proxyActivities } from '@temporalio/workflow';
import type { ProcessServerActivities } from '../activities/process-server';
import type { ResumeAgentWritesInput } from '../shared/contracts/resume-agent-writes';

export async function resumeAgentWrites(input: ResumeAgentWritesInput): Promise<string> {
  const ps = proxyActivities<Pick<ProcessServerActivities, 'resumeAgentWrites'>>({
    taskQueue: input.queue,
    // No process server of that queue: the agent's is gone; say so soon.
    scheduleToStartTimeout: '30s',
    startToCloseTimeout: '2m',
    retry: { maximumAttempts: 1 },
  });
  return ps.resumeAgentWrites({ agentId: input.agentId });
}
