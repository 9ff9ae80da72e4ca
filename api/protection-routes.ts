// Routes that start and end a machine's protection by name: protect again a machine the vault
// knows (after `unprotect` with keepReplica, or on a new Temporal), and unprotect. A new machine
// is protected from what discovery found on its host (POST /v1/hosts/{name}/protect): the API
// never takes a socket path, which only means something on the host itself.
import * as machines from '../operations/machines';
import { onlyFields, optionalBoolean } from './body';
import { jobLocation } from './jobs';
import type { Route } from './router';

export const protectionRoutes: Route[] = [
  {
    method: 'POST',
    path: '/v1/machines/{name}/protect',
    handler: async (req) => {
      onlyFields(await req.body(), []);
      const { machine, workflowId } = await machines.protectFromVault(req.ctx, req.params.name as string);
      const location = jobLocation(workflowId);
      return {
        status: 202,
        body: { machine: machine.name, workflowId, location },
        headers: { Location: location },
      };
    },
  },
  {
    method: 'POST',
    path: '/v1/machines/{name}/unprotect',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['keepReplica']);
      const keepReplica = optionalBoolean(body, 'keepReplica');
      const { name } = await machines.registeredMachine(req.ctx, req.params.name as string);
      return { status: 200, body: await machines.unprotect(req.ctx, name, { keepReplica }) };
    },
  },
];
