// The API's routes, each a thin mapping onto the control-plane operations the CLI uses, so the
// two cannot drift. Jobs that take long (drills, cleanups, failovers) answer 202 with the job and
// a Location to follow its progress; updates that finish quickly answer with their result.
import * as failover from '../operations/failover';
import * as machines from '../operations/machines';
import { OperationError } from '../operations/context';
import { createPolicy, listPolicies } from '../operations/policies';
import { parseBandwidth, parseDuration } from '../shared/policy';
import type { ReplicationPolicy } from '../shared/replication-types';
import {
  onlyFields,
  optionalBoolean,
  optionalDuration,
  optionalEnum,
  optionalString,
  requiredString,
} from './body';
import { jobLocation, jobStatus, listRunningJobs } from './jobs';
import { failbackRoutes } from './failback-routes';
import { protectionRoutes } from './protection-routes';
import { planAndGroupRoutes } from './plan-group-routes';
import { operatorRoutes } from './operator-routes';
import { hostRoutes } from './host-routes';
import { siteRoutes } from './site-routes';
import { agentRoutes } from './agent-routes';
import { recoveryRoutes } from './recovery-routes';
import { identityRoutes } from './identity-routes';
import { approvalRoutes } from './approval-routes';
import { openApiDocument } from './openapi';
import type { ApiRequest, ApiResponse, Route } from './router';

const POINT_FIX =
  'use "latest", "latest-app", a point id, an ISO time, or "group:<group>[/<group point id>]"';
const ok = (body: unknown): ApiResponse => ({ status: 200, body });

function accepted(ref: failover.JobRef): ApiResponse {
  const location = jobLocation(ref.workflowId);
  return { status: 202, body: { ...ref, location }, headers: { Location: location } };
}

/** 400 for a name that is not valid, 404 for a machine not registered, before reading anything else. */
async function registered(req: ApiRequest): Promise<string> {
  return (await machines.registeredMachine(req.ctx, req.params.name as string)).name;
}

/** Bodies of routes that take none must be empty: a body there is a client mistake. */
async function noBody(req: ApiRequest): Promise<void> {
  onlyFields(await req.body(), []);
}

export const routes: Route[] = [
  { method: 'GET', path: '/healthz', handler: () => ok({ ok: true }) },
  { method: 'GET', path: '/openapi.json', handler: () => ok(openApiDocument) },

  {
    method: 'GET',
    path: '/v1/machines',
    handler: async (req) => ok({ machines: await machines.listMachines(req.ctx) }),
  },
  {
    method: 'GET',
    path: '/v1/machines/{name}',
    handler: async (req) => ok(await machines.machineStatus(req.ctx, await registered(req))),
  },
  {
    method: 'GET',
    path: '/v1/machines/{name}/points',
    handler: async (req) => ok({ points: await machines.listPoints(req.ctx, await registered(req)) }),
  },
  {
    method: 'POST',
    path: '/v1/machines/{name}/points',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['kind', 'tag']);
      const kind = optionalEnum(body, 'kind', ['crash', 'app'] as const) ?? 'crash';
      const tag = optionalString(body, 'tag', 'a non-empty label, for example "before-upgrade"');
      const point = await machines.takePoint(req.ctx, await registered(req), { kind, tag });
      return { status: 201, body: point };
    },
  },
  ...(['resync', 'pause', 'resume'] as const).map(
    (action): Route => ({
      method: 'POST',
      path: `/v1/machines/{name}/${action}`,
      handler: async (req) => {
        if (action === 'pause') {
          const body = await req.body();
          onlyFields(body, ['reason']);
          const reason = optionalString(body, 'reason', 'a non-empty text, or leave it out');
          return ok(await machines.pause(req.ctx, await registered(req), reason));
        }
        await noBody(req);
        const name = await registered(req);
        return ok(await (action === 'resync' ? machines.resync : machines.resume)(req.ctx, name));
      },
    }),
  ),

  {
    method: 'GET',
    path: '/v1/policies',
    handler: async (req) => ok({ policies: await listPolicies(req.ctx) }),
  },
  {
    method: 'POST',
    path: '/v1/policies',
    handler: async (req) => {
      const body = await req.body();
      const durations = ['rpo', 'crashEvery', 'appEvery', 'retention', 'keepAll'];
      onlyFields(body, ['name', 'bandwidthLimit', ...durations]);
      const name = requiredString(body, 'name', 'a policy name of lower-case letters, digits and dashes');
      const d = (field: string) => optionalDuration(body, field, (t) => parseDuration(t, field));
      const input: Partial<ReplicationPolicy> & { name: string } = { name };
      const rpo = d('rpo');
      const crash = d('crashEvery');
      const app = d('appEvery');
      const retention = d('retention');
      const keepAll = d('keepAll');
      if (rpo !== undefined) input.rpoThresholdSeconds = rpo;
      if (crash !== undefined) input.crashPointSeconds = crash;
      if (app !== undefined) input.appPointSeconds = app;
      if (retention !== undefined) input.retentionHours = retention / 3600;
      if (keepAll !== undefined) input.keepAllMinutes = Math.round(keepAll / 60);
      const bandwidth = optionalString(
        body,
        'bandwidthLimit',
        'a rate like 50Mbit, 1Gbit or 800kbit, or none',
      );
      if (bandwidth !== undefined)
        input.bandwidthLimitBitsPerSecond = parseBandwidth(bandwidth, 'bandwidthLimit');
      return { status: 201, body: await createPolicy(req.ctx, input) };
    },
  },

  {
    method: 'POST',
    path: '/v1/machines/{name}/test-failover',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['point', 'another']);
      const point = optionalString(body, 'point', POINT_FIX);
      const another = optionalBoolean(body, 'another');
      const { ref } = await failover.startTestFailover(req.ctx, await registered(req), {
        point,
        another,
        wait: false,
      });
      return accepted(ref);
    },
  },
  {
    method: 'POST',
    path: '/v1/machines/{name}/test-failover/cleanup',
    handler: async (req) => {
      await noBody(req);
      const started = await failover.cleanupTestFailover(req.ctx, await registered(req), { wait: false });
      const jobs = started.map(({ ref }) => ({ ...ref, location: jobLocation(ref.workflowId) }));
      return { status: 202, body: { jobs } };
    },
  },
  {
    method: 'POST',
    path: '/v1/machines/{name}/failover',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['point', 'planned']);
      const point = optionalString(body, 'point', POINT_FIX);
      const planned = optionalBoolean(body, 'planned');
      if (planned && point !== undefined)
        throw new OperationError(
          'field "point": a planned failover cuts its own final point; leave "point" out or set "planned": false',
          'invalid',
        );
      const { ref } = await failover.startFailover(req.ctx, await registered(req), {
        point,
        planned,
        wait: false,
      });
      return accepted(ref);
    },
  },
  {
    method: 'POST',
    path: '/v1/machines/{name}/failover/commit',
    handler: async (req) => {
      await noBody(req);
      return ok(await failover.commitFailover(req.ctx, await registered(req)));
    },
  },
  {
    method: 'POST',
    path: '/v1/machines/{name}/failover/change-point',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['point']);
      const point = requiredString(body, 'point', POINT_FIX);
      return ok(await failover.changeRecoveryPoint(req.ctx, await registered(req), point));
    },
  },

  {
    method: 'GET',
    path: '/v1/jobs',
    handler: async (req) =>
      ok({
        jobs: await listRunningJobs(req.ctx, {
          machine: req.query.get('machine') ?? undefined,
          kind: req.query.get('kind') ?? undefined,
        }),
      }),
  },
  {
    method: 'GET',
    path: '/v1/jobs/{workflowId}',
    handler: async (req) => ok(await jobStatus(req.ctx, req.params.workflowId as string)),
  },
  ...planAndGroupRoutes,
  ...protectionRoutes,
  ...failbackRoutes,
  ...operatorRoutes,
  ...hostRoutes,
  ...siteRoutes,
  ...agentRoutes,
  ...recoveryRoutes,
  ...identityRoutes(() => routes),
  ...approvalRoutes,
];
