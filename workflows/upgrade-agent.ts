// upgradeAgent: `osr agent upgrade`. The process server holding the agent's connection stages the
// bundle and has the agent verify it (nothing replaced on a refusal), then switches it and waits
// for the agent to come back with the new version, or with the old one after its own rollback.
// Each step is one attempt: the operator sees the failure and upgrades again.
import { proxyActivities, setHandler } from '@temporalio/workflow';
import type { ProcessServerActivities } from '../activities/process-server';
import {
  upgradeAgentStatusQuery,
  type UpgradeAgentInput,
  type UpgradeAgentResult,
  type UpgradeAgentStatus,
} from '../shared/contracts/upgrade-agent';
import { WORKER_HEARTBEAT_TIMEOUT } from './lib/liveness';

export async function upgradeAgent(input: UpgradeAgentInput): Promise<UpgradeAgentResult> {
  const status: UpgradeAgentStatus = { step: 'staging' };
  setHandler(upgradeAgentStatusQuery, () => status);
  const ps = proxyActivities<Pick<ProcessServerActivities, 'stageAgentUpgrade' | 'switchAgentUpgrade'>>({
    taskQueue: input.queue,
    // No process server of that queue: the agent's is gone; fail soon, not after the switch's wait.
    scheduleToStartTimeout: '30s',
    startToCloseTimeout: `${input.timeoutSeconds + 180}s`,
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: { maximumAttempts: 1 },
  });
  const verified = await ps.stageAgentUpgrade({ agentId: input.agentId, sha256: input.sha256 });
  Object.assign(status, { step: 'restarting', ...verified });
  const done = await ps.switchAgentUpgrade({
    agentId: input.agentId,
    verified,
    timeoutSeconds: input.timeoutSeconds,
  });
  status.step = 'done';
  return { ...verified, ...done };
}
