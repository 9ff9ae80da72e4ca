// `osr agent upgrade <id>|--all`: the agent bundle this release ships goes to each machine over
// the agent's own connection (no SSH after install), from the process server holding it (the
// upgradeAgent workflow on that server's queue). The agent checks the bytes against this
// release's SHA-256 before anything is replaced, restarts into the new version keeping its id,
// credential and change log, and rolls back by itself when the new version does not connect.
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client/lib/errors';
import { packBundle } from '../agent/bundle';
import { agentBundleDir } from '../lib/agents/bundle-source';
import {
  upgradeAgentStatusQuery,
  upgradeAgentWorkflowId,
  type UpgradeAgentResult,
  type UpgradeAgentWorkflow,
} from '../shared/contracts/upgrade-agent';
import { agentListenerQueue, CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { getAgent, listAgents, type AgentView } from './agents';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';

export interface AgentUpgradeInput {
  /** One agent, or `all` outdated ones. */
  id?: string;
  all?: boolean;
  /** The new version must connect within this long, or the agent rolls back (default 120 s). */
  timeoutSeconds?: number;
  onProgress?: (agentId: string, step: string) => void;
}

export type AgentUpgradeResult =
  | (UpgradeAgentResult & { agentId: string })
  | { agentId: string; outcome: 'current'; version: string }
  /** `--all`: a disconnected agent is left as it is. */
  | { agentId: string; outcome: 'skipped'; version: string; reason: string };

function shipped(ctx: ControlContext): { version: string; sha256: string } {
  try {
    return packBundle(agentBundleDir(ctx.config.agents.bundleDir));
  } catch (err) {
    throw new OperationError(
      `no agent bundle to ship (${(err as Error).message}): build OSR first (\`npm run build\`) or set agents.bundleDir`,
      'unavailable',
    );
  }
}

/** The innermost message of a failed workflow (activity → application failure). */
function reason(err: WorkflowFailedError): string {
  let e: Error | undefined = err;
  while (e && (e as { cause?: Error }).cause) e = (e as { cause?: Error }).cause;
  return e?.message ?? err.message;
}

async function upgradeOne(
  ctx: ControlContext,
  agent: AgentView,
  bundle: { version: string; sha256: string },
  input: AgentUpgradeInput,
): Promise<AgentUpgradeResult> {
  if (agent.version === bundle.version)
    return { agentId: agent.id, outcome: 'current', version: agent.version };
  if (agent.state !== 'connected' || !agent.listener)
    throw new OperationError(
      `agent ${agent.id} (${agent.facts.hostname}) is disconnected (last seen ${agent.lastSeenAt ?? 'never'}): an upgrade goes over its connection. Start its service on the machine (\`/etc/init.d/osr-agent start\` or \`systemctl start osr-agent\`) and upgrade again; nothing was changed`,
      'invalid',
    );
  const progress = input.onProgress ?? (() => undefined);
  const client = await ctx.client();
  let handle;
  try {
    handle = await client.workflow.start<UpgradeAgentWorkflow>('upgradeAgent', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: upgradeAgentWorkflowId(agent.id),
      args: [
        {
          agentId: agent.id,
          queue: agentListenerQueue(agent.listener),
          sha256: bundle.sha256,
          timeoutSeconds: input.timeoutSeconds ?? 120,
        },
      ],
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError)
      throw new OperationError(
        `agent ${agent.id} is already being upgraded (workflow ${upgradeAgentWorkflowId(agent.id)}): wait for it`,
        'conflict',
      );
    throw err;
  }
  progress(agent.id, `upgrading ${agent.version} → ${bundle.version}: staging the bundle`);
  const result = handle.result() as Promise<UpgradeAgentResult>;
  let last = 'staging';
  let finished = false;
  void result.finally(() => (finished = true)).catch(() => undefined);
  while (!finished) {
    const status = await handle.query(upgradeAgentStatusQuery).catch(() => undefined);
    if (status && status.step !== last && status.step !== 'done') {
      last = status.step;
      progress(agent.id, `verified ${status.to}; restarting into it and waiting for it to connect`);
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
  }
  try {
    const done = await result;
    if (done.outcome === 'rolled-back')
      throw new OperationError(
        `agent ${agent.id}: ${done.to} did not connect within ${input.timeoutSeconds ?? 120} s and the agent rolled back to ${done.version} by itself; see /var/log/osr-agent.log and /opt/osr-agent/upgrade.json on ${agent.facts.hostname}`,
        'unavailable',
      );
    progress(agent.id, `${done.version} connected`);
    return { agentId: agent.id, ...done };
  } catch (err) {
    if (err instanceof WorkflowFailedError)
      throw new OperationError(`agent ${agent.id}: ${reason(err)}`, 'conflict');
    throw err;
  }
}

/**
 * Upgrades one agent (by id) or every outdated one (`all`: the disconnected are skipped, said so);
 * stops at the first failure.
 */
export const upgradeAgents = audited(
  'agent.upgrade',
  async (ctx: ControlContext, input: AgentUpgradeInput): Promise<AgentUpgradeResult[]> => {
    const target = input;
    if (Boolean(target.id) === Boolean(target.all))
      throw new OperationError('name one agent id, or --all for every outdated agent', 'invalid');
    const t = input.timeoutSeconds;
    if (t !== undefined && (!Number.isInteger(t) || t < 10 || t > 3600))
      throw new OperationError('--timeout: 10 s to 1 h (e.g. --timeout 2m)', 'invalid');
    const agents = target.id
      ? [await getAgent(ctx, target.id)]
      : (await listAgents(ctx)).filter((a) => a.outdated);
    const bundle = shipped(ctx);
    const results: AgentUpgradeResult[] = [];
    for (const agent of agents)
      results.push(
        target.all && agent.state !== 'connected'
          ? { agentId: agent.id, outcome: 'skipped', version: agent.version, reason: 'disconnected' }
          : await upgradeOne(ctx, agent, bundle, input),
      );
    return results;
  },
  (_ctx, input) => ({ target: input.id ?? 'all agents', details: { timeoutSeconds: input.timeoutSeconds } }),
);
