// Routes of the three stages after a committed failover (reprotect, failback, re-enable), for one
// machine and for a recovery plan: thin mappings onto shared/operations/failback.ts, as the CLI.
// Starting a stage answers 202 with the job's workflow id and a Location to follow it.
import * as failback from '../operations/failback';
import { registeredMachine } from '../operations/machines';
import { parseDuration } from '../shared/policy';
import { onlyFields, optionalDuration, optionalString } from './body';
import { jobLocation } from './jobs';
import type { ApiRequest, ApiResponse, Route } from './router';

function accepted(workflowId: string): ApiResponse {
  const location = jobLocation(workflowId);
  return { status: 202, body: { workflowId, location }, headers: { Location: location } };
}

async function registered(req: ApiRequest): Promise<string> {
  return (await registeredMachine(req.ctx, req.params.name as string)).name;
}

async function noBody(req: ApiRequest): Promise<void> {
  onlyFields(await req.body(), []);
}

const STAGES = ['reprotect', 'failback', 'reenable'] as const;

export const failbackRoutes: Route[] = [
  {
    method: 'POST',
    path: '/v1/machines/{name}/reprotect',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['interval', 'pre', 'post']);
      const intervalSeconds = optionalDuration(body, 'interval', (t) => parseDuration(t, 'interval'));
      const pre = optionalString(body, 'pre', "a command that stops the recovery-site copy's writers");
      const post = optionalString(body, 'post', "a command that resumes the recovery-site copy's writers");
      const started = await failback.startReprotect(req.ctx, await registered(req), {
        intervalSeconds: intervalSeconds || undefined,
        quiesce: pre || post ? { pre, post } : undefined,
        wait: false,
      });
      return accepted(started.workflowId);
    },
  },
  {
    method: 'GET',
    path: '/v1/machines/{name}/reprotect',
    handler: async (req) => ({
      status: 200,
      body: await failback.reprotectStatus(req.ctx, await registered(req)),
    }),
  },
  {
    method: 'POST',
    path: '/v1/machines/{name}/reprotect/stop',
    handler: async (req) => {
      await noBody(req);
      return { status: 200, body: await failback.stopReprotect(req.ctx, await registered(req)) };
    },
  },
  {
    method: 'POST',
    path: '/v1/machines/{name}/failback',
    handler: async (req) => {
      await noBody(req);
      const started = await failback.startFailback(req.ctx, await registered(req), { wait: false });
      return accepted(started.workflowId);
    },
  },
  {
    method: 'POST',
    path: '/v1/machines/{name}/reenable',
    handler: async (req) => {
      await noBody(req);
      const started = await failback.startReenable(req.ctx, await registered(req), { wait: false });
      return accepted(started.workflowId);
    },
  },
  ...STAGES.map(
    (stage): Route => ({
      method: 'POST',
      path: `/v1/plans/{name}/${stage}`,
      handler: async (req) => {
        await noBody(req);
        const started = await failback.planStage(req.ctx, req.params.name as string, stage, { wait: false });
        return accepted(started.workflowId);
      },
    }),
  ),
];
