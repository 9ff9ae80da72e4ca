// The OpenAPI 3.1 document served at /openapi.json, written by hand so it reads as documentation;
// test/unit/openapi.test.ts keeps its paths and methods equal to the router's.
import { JOB_KINDS } from './jobs';
import { failbackPaths, failbackSchemas } from './openapi-failback';
import { operatorPaths, operatorSchemas } from './openapi-operator';

type Schema = Record<string, unknown>;

interface Parameter {
  name: string;
  in: 'path' | 'query';
  required: boolean;
  description: string;
  schema: Schema;
}

interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  security?: Array<Record<string, string[]>>;
  parameters?: Parameter[];
  requestBody?: { required: boolean; content: { 'application/json': { schema: Schema } } };
  responses: Record<string, { description: string; content?: Record<string, { schema: Schema }> }>;
}

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  servers: Array<{ url: string }>;
  security: Array<Record<string, string[]>>;
  paths: Record<string, Partial<Record<'get' | 'post', Operation>>>;
  components: { securitySchemes: Record<string, Schema>; schemas: Record<string, Schema> };
}

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Schema) => ({ content: { 'application/json': { schema } } });
const body = (schema: Schema, required = true) => ({
  required,
  content: { 'application/json': { schema } } as const,
});
const error = (description: string) => ({ description, ...json(ref('Error')) });

const machineName: Parameter = {
  name: 'name',
  in: 'path',
  required: true,
  description: 'machine name (lower-case letters, digits, dashes)',
  schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
};

/** The refusals every authenticated route may answer with. */
const common = {
  '400': error('bad body or field; the message names the field and the fix'),
  '401': error('no or wrong bearer token (WWW-Authenticate: Bearer)'),
  '503': error('Temporal or storage unavailable'),
};
const machineErrors = { ...common, '404': error('no such machine (or point)') };
const conflict = { '409': error("the operation cannot run in the machine's current state") };

const point = {
  type: 'string',
  description:
    'latest (default), latest-app, a point id, an ISO time (newest point at or before it), or group:<group>[/<group point id>] (the member point of a consistency group point)',
};

function machineAction(operationId: string, summary: string, extra: Partial<Operation> = {}): Operation {
  return {
    operationId,
    summary,
    tags: ['machines'],
    parameters: [machineName],
    responses: {
      '200': { description: 'the machine status after the action', ...json(ref('MachineStatus')) },
      ...machineErrors,
      ...conflict,
    },
    ...extra,
  };
}

const planName: Parameter = { ...machineName, description: 'plan name' };
const groupName: Parameter = { ...machineName, description: 'consistency group name' };
const planJobId: Parameter = {
  name: 'job',
  in: 'path',
  required: true,
  description: 'the plan job id, its workflow id (percent-encoded), or for commit the plan name',
  schema: { type: 'string' },
};

function planJobStart(operationId: string, summary: string, properties: Schema): Operation {
  return {
    operationId,
    summary,
    tags: ['plans'],
    parameters: [planName],
    requestBody: body({ type: 'object', properties }, false),
    responses: {
      '202': {
        description: 'started; follow the Location (/v1/jobs/{workflowId})',
        ...json(ref('PlanJob')),
      },
      ...common,
      '404': error('no such plan (or point)'),
      ...conflict,
    },
  };
}

export const openApiDocument: OpenApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Open Site Recovery API',
    version: '1',
    description:
      'Served by `osr serve`. Every /v1 route needs `Authorization: Bearer <token>` (api.token, or the token file `osr serve` creates and names at first start). Long jobs answer 202 with a Location under /v1/jobs to follow their progress.',
  },
  servers: [{ url: '/' }],
  security: [{ bearer: [] }],
  paths: {
    ...operatorPaths,
    ...failbackPaths,
    '/healthz': {
      get: {
        operationId: 'health',
        summary: 'liveness of the API server (no auth)',
        tags: ['meta'],
        security: [],
        responses: {
          '200': { description: 'up', ...json({ type: 'object', properties: { ok: { const: true } } }) },
        },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'this document (no auth)',
        tags: ['meta'],
        security: [],
        responses: { '200': { description: 'OpenAPI 3.1 document', ...json({ type: 'object' }) } },
      },
    },
    '/v1/machines': {
      get: {
        operationId: 'listMachines',
        summary: 'protected machines with their live status',
        tags: ['machines'],
        responses: {
          '200': {
            description: 'machines',
            ...json({
              type: 'object',
              properties: { machines: { type: 'array', items: ref('MachineOverview') } },
            }),
          },
          ...common,
        },
      },
    },
    '/v1/machines/{name}': {
      get: {
        operationId: 'machineStatus',
        summary: "a machine's state, RPO, last points, alerts and sync progress",
        tags: ['machines'],
        parameters: [machineName],
        responses: { '200': { description: 'status', ...json(ref('MachineStatus')) }, ...machineErrors },
      },
    },
    '/v1/machines/{name}/points': {
      get: {
        operationId: 'listPoints',
        summary: "a machine's recovery points, oldest first",
        tags: ['points'],
        parameters: [machineName],
        responses: {
          '200': {
            description: 'points',
            ...json({
              type: 'object',
              properties: { points: { type: 'array', items: ref('RecoveryPoint') } },
            }),
          },
          ...machineErrors,
        },
      },
      post: {
        operationId: 'cutPoint',
        summary: 'cut a recovery point now; answers once it is published',
        tags: ['points'],
        parameters: [machineName],
        requestBody: body(
          {
            type: 'object',
            additionalProperties: false,
            properties: {
              kind: { enum: ['crash', 'app'], default: 'crash' },
              tag: { type: 'string', minLength: 1 },
            },
          },
          false,
        ),
        responses: {
          '201': { description: 'the published point', ...json(ref('PointRef')) },
          ...machineErrors,
          ...conflict,
        },
      },
    },
    '/v1/machines/{name}/resync': {
      post: machineAction('resync', 'compare checksums of source and replica; send only the differences'),
    },
    '/v1/machines/{name}/pause': {
      post: machineAction('pause', 'stop cutting points (tracking goes on)', {
        requestBody: body(
          { type: 'object', additionalProperties: false, properties: { reason: { type: 'string' } } },
          false,
        ),
      }),
    },
    '/v1/machines/{name}/resume': { post: machineAction('resume', 'resume cutting points') },
    '/v1/policies': {
      get: {
        operationId: 'listPolicies',
        summary: 'replication policies',
        tags: ['policies'],
        responses: {
          '200': {
            description: 'policies',
            ...json({ type: 'object', properties: { policies: { type: 'array', items: ref('Policy') } } }),
          },
          ...common,
        },
      },
      post: {
        operationId: 'createPolicy',
        summary: 'create a policy (durations as seconds or text like 30s, 5m, 1h, 2d)',
        tags: ['policies'],
        requestBody: body({
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: {
            name: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
            rpo: ref('Duration'),
            crashEvery: ref('Duration'),
            appEvery: ref('Duration'),
            retention: ref('Duration'),
            keepAll: ref('Duration'),
          },
        }),
        responses: {
          '201': { description: 'the policy', ...json(ref('Policy')) },
          ...common,
          '409': error('a policy of that name exists'),
        },
      },
    },
    '/v1/machines/{name}/test-failover': {
      post: {
        operationId: 'startTestFailover',
        summary: 'start a drill: the machine built from a point, replication untouched',
        tags: ['recovery'],
        parameters: [machineName],
        requestBody: body({ type: 'object', additionalProperties: false, properties: { point } }, false),
        responses: { '202': { description: 'started', ...json(ref('JobRef')) }, ...machineErrors },
      },
    },
    '/v1/machines/{name}/test-failover/cleanup': {
      post: {
        operationId: 'cleanupTestFailover',
        summary: "remove what the machine's drills made",
        tags: ['recovery'],
        parameters: [machineName],
        responses: {
          '202': {
            description: 'one cleanup job per drill',
            ...json({ type: 'object', properties: { jobs: { type: 'array', items: ref('JobRef') } } }),
          },
          ...machineErrors,
          '409': error('a drill is still running'),
        },
      },
    },
    '/v1/machines/{name}/failover': {
      post: {
        operationId: 'startFailover',
        summary: 'fail the machine over; it then waits for commit or change-point',
        tags: ['recovery'],
        parameters: [machineName],
        requestBody: body(
          {
            type: 'object',
            additionalProperties: false,
            properties: {
              point: { ...point, description: `unplanned only: ${point.description}` },
              planned: {
                type: 'boolean',
                description: "stop the source's writes and cut a final point first",
              },
            },
          },
          false,
        ),
        responses: {
          '202': { description: 'started', ...json(ref('JobRef')) },
          ...machineErrors,
          '409': error('a failover of this machine is running or committed'),
        },
      },
    },
    '/v1/machines/{name}/failover/commit': {
      post: {
        operationId: 'commitFailover',
        summary: 'end forward replication; replica and points are kept for reprotect',
        tags: ['recovery'],
        parameters: [machineName],
        responses: {
          '200': { description: 'the committed job', ...json(ref('RecoveryStatus')) },
          ...machineErrors,
          ...conflict,
        },
      },
    },
    '/v1/machines/{name}/failover/change-point': {
      post: {
        operationId: 'changeRecoveryPoint',
        summary: "rebuild a failed-over machine's disks from another point",
        tags: ['recovery'],
        parameters: [machineName],
        requestBody: body({
          type: 'object',
          additionalProperties: false,
          required: ['point'],
          properties: { point },
        }),
        responses: {
          '200': { description: 'the job after the change', ...json(ref('RecoveryStatus')) },
          ...machineErrors,
          ...conflict,
        },
      },
    },
    '/v1/jobs': {
      get: {
        operationId: 'listJobs',
        summary: 'running OSR workflows (OsrJobKind / OsrMachine search attributes)',
        tags: ['jobs'],
        parameters: [
          {
            name: 'machine',
            in: 'query',
            required: false,
            description: 'only this machine',
            schema: { type: 'string' },
          },
          {
            name: 'kind',
            in: 'query',
            required: false,
            description: 'only this kind',
            schema: { enum: [...JOB_KINDS] },
          },
        ],
        responses: {
          '200': {
            description: 'jobs, newest first',
            ...json({ type: 'object', properties: { jobs: { type: 'array', items: ref('Job') } } }),
          },
          ...common,
        },
      },
    },
    '/v1/jobs/{workflowId}': {
      get: {
        operationId: 'jobStatus',
        summary: "a job and its progress (the answer of the workflow's status query)",
        tags: ['jobs'],
        parameters: [
          {
            name: 'workflowId',
            in: 'path',
            required: true,
            description: 'the workflow id, percent-encoded (drill%2Fweb-1%2F20261125T071800000Z)',
            schema: { type: 'string' },
          },
        ],
        responses: {
          '200': {
            description: 'the job',
            ...json({
              allOf: [
                ref('Job'),
                {
                  type: 'object',
                  properties: {
                    progress: { oneOf: [ref('MachineStatus'), ref('RecoveryStatus')] },
                    note: { type: 'string' },
                  },
                },
              ],
            }),
          },
          ...common,
          '404': error('no OSR job with that id'),
        },
      },
    },

    '/v1/plans': {
      get: {
        operationId: 'listPlans',
        summary: 'the recovery plans',
        tags: ['plans'],
        responses: {
          '200': {
            description: 'plans',
            ...json({ type: 'object', properties: { plans: { type: 'array', items: ref('Plan') } } }),
          },
          ...common,
        },
      },
      post: {
        operationId: 'createPlan',
        summary: 'create a plan: ordered groups of machines with pre and post actions',
        tags: ['plans'],
        requestBody: body({
          type: 'object',
          required: ['name', 'groups'],
          properties: { name: { type: 'string' }, groups: { type: 'array', items: ref('PlanGroup') } },
        }),
        responses: {
          '201': { description: 'the plan', ...json(ref('Plan')) },
          ...common,
          '409': error('a plan of that name exists'),
        },
      },
    },
    '/v1/plans/{name}': {
      get: {
        operationId: 'getPlan',
        summary: 'a plan and its jobs',
        tags: ['plans'],
        parameters: [planName],
        responses: {
          '200': {
            description: 'the plan and its jobs, newest first',
            ...json({
              type: 'object',
              properties: { plan: ref('Plan'), jobs: { type: 'array', items: ref('PlanJob') } },
            }),
          },
          ...common,
          '404': error('no such plan'),
        },
      },
    },
    '/v1/plans/{name}/test-failover': {
      post: planJobStart(
        'planTestFailover',
        'drill the whole plan: groups in order, actions run, replication untouched',
        {
          point,
        },
      ),
    },
    '/v1/plans/{name}/test-failover/cleanup': {
      post: planJobStart('planCleanup', "remove what the plan's drill made", {
        drill: { type: 'string', description: 'the drill job to clean up (default: the newest)' },
      }),
    },
    '/v1/plans/{name}/failover': {
      post: planJobStart('planFailover', 'fail the plan over: groups in order, then wait for commit', {
        point,
        planned: {
          type: 'boolean',
          description: 'stop writes and cut a final point per machine (no data loss)',
        },
      }),
    },
    '/v1/plan-jobs/{job}/commit': {
      post: {
        operationId: 'planCommit',
        summary: "commit a plan's failover (the job id, its workflow id, or the plan name)",
        tags: ['plans'],
        parameters: [planJobId],
        responses: {
          '200': { description: 'the job after commit', ...json(ref('PlanStatus')) },
          ...common,
          '404': error('no such job'),
          ...conflict,
        },
      },
    },
    '/v1/plan-jobs/{job}/approve': {
      post: {
        operationId: 'planApprove',
        summary: 'approve a manual action the plan job waits on',
        tags: ['plans'],
        parameters: [planJobId],
        requestBody: body({
          type: 'object',
          required: ['action'],
          properties: {
            action: { type: 'string', description: 'the action id, as the job status shows it' },
            by: { type: 'string', description: 'who approves (recorded in the job); default "api"' },
          },
        }),
        responses: {
          '200': { description: 'the job after the approval', ...json(ref('PlanStatus')) },
          ...common,
          '404': error('no such job'),
          ...conflict,
        },
      },
    },
    '/v1/groups': {
      get: {
        operationId: 'listGroups',
        summary: 'the consistency groups',
        tags: ['groups'],
        responses: {
          '200': {
            description: 'groups',
            ...json({ type: 'object', properties: { groups: { type: 'array', items: ref('Group') } } }),
          },
          ...common,
        },
      },
      post: {
        operationId: 'createGroup',
        summary:
          'create a consistency group: its points are one cut across the members, taken under a brief write barrier',
        tags: ['groups'],
        requestBody: body({
          type: 'object',
          required: ['name', 'machines'],
          properties: {
            name: { type: 'string' },
            machines: { type: 'array', items: { type: 'string' }, minItems: 2 },
            intervalSeconds: { type: 'integer', minimum: 1, default: 300 },
          },
        }),
        responses: {
          '201': { description: 'the group, active', ...json(ref('GroupStatus')) },
          ...common,
          '404': error('a machine is not protected'),
          '409': error('the group exists, or a machine is in another group'),
        },
      },
    },
    '/v1/groups/{name}': {
      get: {
        operationId: 'groupStatus',
        summary: 'a group: state, cut in progress, last point, write-barrier lengths, alerts',
        tags: ['groups'],
        parameters: [groupName],
        responses: {
          '200': { description: 'the group', ...json(ref('GroupStatus')) },
          ...common,
          '404': error('no such group'),
        },
      },
    },
    '/v1/groups/{name}/points': {
      get: {
        operationId: 'groupPoints',
        summary: "a group's points, oldest first: one recovery point per member",
        tags: ['groups'],
        parameters: [groupName],
        responses: {
          '200': {
            description: 'group points',
            ...json({ type: 'object', properties: { points: { type: 'array', items: ref('GroupPoint') } } }),
          },
          ...common,
          '404': error('no such group'),
        },
      },
      post: {
        operationId: 'takeGroupPoint',
        summary: 'cut a group point now; answers once every member published its point',
        tags: ['groups'],
        parameters: [groupName],
        responses: {
          '200': { description: 'the group point', ...json(ref('GroupPoint')) },
          ...common,
          '404': error('no such group'),
          '409': error('the cut failed or the group is not active (the message says why)'),
        },
      },
    },
    '/v1/groups/{name}/delete': {
      post: {
        operationId: 'deleteGroup',
        summary: 'end the group: members go back to their own policies; group points stay',
        tags: ['groups'],
        parameters: [groupName],
        responses: {
          '200': { description: 'the group, disabled', ...json(ref('GroupStatus')) },
          ...common,
          '404': error('no such group'),
        },
      },
    },
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      ...operatorSchemas,
      ...failbackSchemas,
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: { code: { type: 'string' }, message: { type: 'string' } },
          },
        },
      },
      Duration: {
        oneOf: [
          { type: 'integer', minimum: 0, description: 'seconds' },
          { type: 'string', pattern: '^\\d+(\\.\\d+)?\\s*(s|m|h|d)?$' },
        ],
      },
      Policy: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          rpoThresholdSeconds: { type: 'integer' },
          crashPointSeconds: { type: 'integer' },
          appPointSeconds: { type: 'integer' },
          retentionHours: { type: 'number' },
          keepAllMinutes: { type: 'integer' },
        },
      },
      PointRef: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          instant: { type: 'string', format: 'date-time' },
          kind: { enum: ['crash', 'app'] },
        },
      },
      RecoveryPoint: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          machine: { type: 'string' },
          cycle: { type: 'integer' },
          instant: { type: 'string', format: 'date-time' },
          kind: { enum: ['crash', 'app'] },
          tag: { type: 'string' },
          disks: { type: 'array', items: { type: 'object' } },
          createdAt: { type: 'string', format: 'date-time' },
        },
      },
      MachineStatus: {
        type: 'object',
        properties: {
          machine: { type: 'string' },
          state: { type: 'string' },
          policy: ref('Policy'),
          disks: { type: 'array', items: { type: 'object' } },
          cycle: { type: 'integer' },
          progress: { type: 'array', items: { type: 'object' } },
          lastPoint: ref('PointRef'),
          lastAppPoint: ref('PointRef'),
          rpoSeconds: { type: 'number' },
          alerts: { type: 'array', items: { type: 'object' } },
          stats: { type: 'object' },
          failing: {
            type: 'object',
            description:
              'present while cycles keep failing: they back off (doubling, capped at 60 s) until one succeeds',
            properties: {
              since: { type: 'string', format: 'date-time' },
              failures: { type: 'integer' },
              reason: { type: 'string' },
              sourceUnreachable: { type: 'boolean' },
              retryAt: { type: 'string', format: 'date-time' },
            },
          },
          protectedSince: { type: 'string', format: 'date-time' },
          health: ref('MachineHealth'),
        },
      },
      MachineHealth: {
        type: 'object',
        description: 'computed by shared/machine-health.ts; the rules are in docs/operations.md',
        properties: {
          level: { enum: ['healthy', 'warning', 'critical'] },
          reasons: {
            type: 'array',
            items: { type: 'string' },
            description: 'worst first; empty when healthy',
          },
        },
      },
      MachineOverview: {
        type: 'object',
        properties: {
          machine: { type: 'string' },
          registered: { type: 'boolean' },
          status: ref('MachineStatus'),
          note: { type: 'string' },
          ended: {
            type: 'object',
            description: 'its protectMachine workflow was ended outside OSR (cancelled, terminated…)',
            properties: {
              state: { enum: ['ended-outside-osr', 'failed'] },
              workflowId: { type: 'string' },
              closedAs: { enum: ['canceled', 'terminated', 'failed', 'timed-out', 'missing'] },
              closedAt: { type: 'string', format: 'date-time' },
              reason: { type: 'string' },
              fix: { type: 'string' },
            },
          },
          health: ref('MachineHealth'),
        },
      },
      JobRef: {
        type: 'object',
        properties: {
          job: { type: 'string' },
          workflowId: { type: 'string' },
          machine: { type: 'string' },
          kind: { enum: ['drill', 'drill-cleanup', 'failover'] },
          pointId: { type: 'string' },
          location: { type: 'string', description: 'GET it to follow the job' },
        },
      },
      Job: {
        type: 'object',
        properties: {
          workflowId: { type: 'string' },
          runId: { type: 'string' },
          kind: { type: 'string' },
          machine: { type: 'string' },
          state: { type: 'string' },
          status: { type: 'string' },
          startTime: { type: 'string', format: 'date-time' },
          summary: { type: 'string' },
        },
      },
      RecoveryStatus: {
        type: 'object',
        properties: {
          job: { type: 'string' },
          kind: { enum: ['drill', 'drill-cleanup', 'failover'] },
          machine: { type: 'string' },
          state: { enum: ['running', 'ready', 'cleaned-up', 'failed-over', 'committed', 'failed'] },
          planned: { type: 'boolean' },
          point: ref('PointRef'),
          disks: { type: 'array', items: { type: 'object' } },
          error: { type: 'string' },
          steps: { type: 'array', items: { type: 'object' } },
        },
      },

      Plan: {
        type: 'object',
        properties: { name: { type: 'string' }, groups: { type: 'array', items: ref('PlanGroup') } },
      },
      PlanGroup: {
        type: 'object',
        required: ['machines'],
        properties: {
          name: { type: 'string' },
          machines: { type: 'array', items: { type: 'string' } },
          pre: { type: 'array', items: ref('PlanAction') },
          post: { type: 'array', items: ref('PlanAction') },
        },
      },
      PlanAction: {
        type: 'object',
        required: ['kind'],
        properties: {
          id: { type: 'string' },
          kind: { enum: ['script', 'manual'] },
          command: {
            type: 'string',
            description: 'script: run by a worker, told OSR_MACHINES and the points',
          },
          instruction: { type: 'string', description: 'manual: what the operator must do before approving' },
          timeoutSeconds: { type: 'integer' },
          onTimeout: { enum: ['fail', 'continue'] },
        },
      },
      PlanJob: {
        type: 'object',
        properties: {
          job: { type: 'string' },
          plan: { type: 'string' },
          operation: { enum: ['test-failover', 'cleanup', 'failover'] },
          workflowId: { type: 'string' },
          startedAt: { type: 'string', format: 'date-time' },
        },
      },
      PlanStatus: {
        type: 'object',
        description: "the plan job's status query: groups, actions and machines with their states",
        properties: {
          plan: { type: 'string' },
          job: { type: 'string' },
          operation: { type: 'string' },
          state: { type: 'string' },
          groups: { type: 'array', items: { type: 'object' } },
          error: { type: 'string' },
        },
      },
      Group: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          machines: { type: 'array', items: { type: 'string' } },
          site: { type: 'string' },
          intervalSeconds: { type: 'integer' },
          createdAt: { type: 'string', format: 'date-time' },
        },
      },
      GroupStatus: {
        type: 'object',
        properties: {
          group: { type: 'string' },
          machines: { type: 'array', items: { type: 'string' } },
          state: { enum: ['starting', 'active', 'disabling', 'disabled'] },
          phase: { enum: ['waiting-for-members', 'holding-writes', 'freezing', 'releasing', 'publishing'] },
          intervalSeconds: { type: 'integer' },
          cut: { type: 'integer' },
          rpoSeconds: { type: 'integer' },
          lastPoint: { type: 'object' },
          barrier: {
            type: 'object',
            description: 'how long writes were held, ms',
            properties: {
              last: { type: 'integer' },
              max: { type: 'integer' },
              mean: { type: 'integer' },
              count: { type: 'integer' },
            },
          },
          alerts: { type: 'array', items: { type: 'object' } },
          stats: { type: 'object' },
          failing: {
            type: 'object',
            description:
              'present while cycles keep failing: they back off (doubling, capped at 60 s) until one succeeds',
            properties: {
              since: { type: 'string', format: 'date-time' },
              failures: { type: 'integer' },
              reason: { type: 'string' },
              sourceUnreachable: { type: 'boolean' },
              retryAt: { type: 'string', format: 'date-time' },
            },
          },
        },
      },
      GroupPoint: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          group: { type: 'string' },
          cut: { type: 'integer' },
          instant: { type: 'string', format: 'date-time' },
          members: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                machine: { type: 'string' },
                pointId: { type: 'string' },
                instant: { type: 'string' },
              },
            },
          },
          barrierMs: { type: 'integer' },
          consistent: { type: 'boolean' },
        },
      },
    },
  },
};
