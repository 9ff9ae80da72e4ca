// Routes for Mobility agents (operations/agents.ts): the same reads as `osr agent list|show`.
// Tokens and installs stay with the CLI, which holds the SSH key.
import { getAgent, listAgents } from '../operations/agents';
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
];
