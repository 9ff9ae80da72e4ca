// Routes of recovery plans (create, list, start a drill, cleanup or failover, commit, approve a
// manual action) and of consistency groups, mapped onto the same operations as `osr plan` and
// `osr group`. Plan jobs answer 202 with a Location to follow at /v1/jobs/{workflowId}.
import * as groups from '../operations/groups';
import * as plans from '../operations/plans';
import { OperationError } from '../operations/context';
import type { PlanOperation } from '../shared/contracts/recovery-plan';
import { onlyFields, optionalBoolean, optionalString, requiredString, type JsonObject } from './body';
import type { ApiResponse, Route } from './router';
import { jobLocation } from './jobs';

const ok = (body: unknown): ApiResponse => ({ status: 200, body });

function invalid(field: string, fix: string): OperationError {
  return new OperationError(`field "${field}": ${fix}`, 'invalid');
}

function stringList(body: JsonObject, field: string): string[] {
  const value = body[field];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v.trim() === ''))
    throw invalid(field, 'must be an array of machine names');
  return value as string[];
}

function startPlanRoute(operation: PlanOperation, fields: string[]): Route {
  const path =
    operation === 'test-failover'
      ? 'test-failover'
      : operation === 'cleanup'
        ? 'test-failover/cleanup'
        : 'failover';
  return {
    method: 'POST',
    path: `/v1/plans/{name}/${path}`,
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, fields);
      const planned = fields.includes('planned') ? optionalBoolean(body, 'planned') : undefined;
      const point = fields.includes('point')
        ? optionalString(body, 'point', 'use "latest", "latest-app", a point id, or an ISO time')
        : undefined;
      if (planned && point !== undefined)
        throw invalid(
          'point',
          'a planned failover cuts its own final points; leave "point" out or set "planned": false',
        );
      const drill = fields.includes('drill')
        ? optionalString(body, 'drill', 'the drill job id to clean up (default: the newest)')
        : undefined;
      const { ref } = await plans.startPlan(req.ctx, req.params.name as string, operation, {
        point,
        planned,
        drill,
        wait: false,
      });
      const location = jobLocation(ref.workflowId);
      return { status: 202, body: { ...ref, location }, headers: { Location: location } };
    },
  };
}

export const planAndGroupRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/plans',
    handler: async (req) => ok({ plans: await plans.listPlans(req.ctx) }),
  },
  {
    method: 'POST',
    path: '/v1/plans',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['name', 'groups', 'networks', 'requireApproval']);
      const name = requiredString(body, 'name', 'the plan name');
      if (!Array.isArray(body.groups))
        throw invalid('groups', 'must be an array of {name?, machines, pre?, post?}');
      if (body.networks !== undefined && !Array.isArray(body.networks))
        throw invalid(
          'networks',
          'must be an array of {source, subnetId, drillSubnetId?, drillOnProductionSubnet?}',
        );
      const plan = await plans.createPlan(req.ctx, {
        name,
        groups: body.groups as plans.PlanSpec['groups'],
        networks: body.networks as plans.PlanSpec['networks'],
        ...(optionalBoolean(body, 'requireApproval') ? { requireApproval: true } : {}),
      });
      return { status: 201, body: plan, headers: { Location: `/v1/plans/${plan.name}` } };
    },
  },
  {
    method: 'GET',
    path: '/v1/plans/{name}',
    handler: async (req) => {
      const name = req.params.name as string;
      return ok({ plan: await plans.getPlan(req.ctx, name), jobs: await plans.listPlanJobs(req.ctx, name) });
    },
  },
  startPlanRoute('test-failover', ['point']),
  startPlanRoute('cleanup', ['drill']),
  startPlanRoute('failover', ['point', 'planned']),
  {
    method: 'POST',
    path: '/v1/plan-jobs/{job}/commit',
    handler: async (req) => {
      onlyFields(await req.body(), []);
      return ok(await plans.commitPlan(req.ctx, req.params.job as string));
    },
  },
  {
    method: 'POST',
    path: '/v1/plan-jobs/{job}/approve',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['action', 'by']);
      const action = requiredString(body, 'action', 'the id of the manual action (see the job status)');
      const by = optionalString(body, 'by', 'who approves (a name)') ?? 'api';
      return ok(await plans.approve(req.ctx, req.params.job as string, action, by));
    },
  },

  {
    method: 'GET',
    path: '/v1/groups',
    handler: async (req) => ok({ groups: await groups.listGroups(req.ctx) }),
  },
  {
    method: 'POST',
    path: '/v1/groups',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['name', 'machines', 'intervalSeconds']);
      const name = requiredString(body, 'name', 'the group name');
      const interval = body.intervalSeconds;
      if (
        interval !== undefined &&
        (typeof interval !== 'number' || !Number.isInteger(interval) || interval < 1)
      )
        throw invalid('intervalSeconds', 'must be a whole number of seconds, at least 1');
      const status = await groups.createGroup(req.ctx, {
        name,
        machines: stringList(body, 'machines'),
        intervalSeconds: interval as number | undefined,
      });
      return { status: 201, body: status, headers: { Location: `/v1/groups/${name}` } };
    },
  },
  {
    method: 'GET',
    path: '/v1/groups/{name}',
    handler: async (req) => ok(await groups.groupStatus(req.ctx, req.params.name as string)),
  },
  {
    method: 'GET',
    path: '/v1/groups/{name}/points',
    handler: async (req) => ok({ points: await groups.groupPoints(req.ctx, req.params.name as string) }),
  },
  {
    method: 'POST',
    path: '/v1/groups/{name}/points',
    handler: async (req) => {
      onlyFields(await req.body(), []);
      return ok(await groups.takeGroupPoint(req.ctx, req.params.name as string));
    },
  },
  {
    method: 'POST',
    path: '/v1/groups/{name}/delete',
    handler: async (req) => {
      onlyFields(await req.body(), []);
      return ok(await groups.deleteGroup(req.ctx, req.params.name as string));
    },
  },
];
