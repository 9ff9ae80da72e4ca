// Routes for Mobility agents (operations/agents.ts): the same reads as `osr agent list|show`,
// protecting an agent's machine (`osr protect --agent`) and upgrading an agent (`osr agent upgrade`). Tokens and installs stay with the CLI,
// which holds the SSH key.
import { upgradeAgents } from '../operations/agent-upgrade';
import { resumeAgentWrites } from '../operations/agent-resume';
import { getAgent, listAgents } from '../operations/agents';
import { parseDuration } from '../shared/policy';
import { protect } from '../operations/machines';
import { onlyFields, optionalDuration, optionalString, optionalStringList, requiredString } from './body';
import { jobLocation } from './jobs';
import type { Route } from './router';

export const agentRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/agents',
    handler: async (req) => ({ status: 200, body: { agents: await listAgents(req.ctx) } }),
  },
  {
    method: 'GET',
    path: '/v1/agents/{id}',
    handler: async (req) => ({ status: 200, body: await getAgent(req.ctx, req.params.id as string) }),
  },
  {
    method: 'POST',
    path: '/v1/agents/{id}/protect',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['as', 'policy', 'disks', 'pre', 'post']);
      const pre = optionalString(
        body,
        'pre',
        'a command the agent runs on the machine before an app-consistent point',
      );
      const post = optionalString(body, 'post', 'a command the agent runs on the machine after it');
      const started = await protect(req.ctx, {
        ...(pre || post ? { quiesce: { ...(pre ? { pre } : {}), ...(post ? { post } : {}) } } : {}),
        name: requiredString(body, 'as', 'the name to protect the machine as'),
        agentId: req.params.id as string,
        policy: optionalString(body, 'policy', 'a policy name'),
        disks: optionalStringList(
          body,
          'disks',
          'a list of disk names as the agent lists them, e.g. ["vdb"]',
        ),
      });
      const location = jobLocation(started.workflowId);
      return {
        status: 202,
        body: { workflowId: started.workflowId, machine: started.machine.name, location },
        headers: { Location: location },
      };
    },
  },
  {
    method: 'POST',
    path: '/v1/agents/{id}/upgrade',
    // Answers when the agent is back with the new version (or refused, or rolled back): a minute or two.
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['timeout']);
      const timeoutSeconds = optionalDuration(body, 'timeout', (t) => parseDuration(t, 'timeout'));
      const [result] = await upgradeAgents(req.ctx, { id: req.params.id as string, timeoutSeconds });
      return { status: 200, body: result };
    },
  },
  {
    method: 'POST',
    path: '/v1/agents/{id}/resume',
    handler: async (req) => {
      onlyFields(await req.body(), []);
      return { status: 200, body: await resumeAgentWrites(req.ctx, req.params.id as string) };
    },
  },
];
