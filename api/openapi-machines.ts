// The OpenAPI description of the machine routes (api/routes.ts): machines, their points and
// updates, policies, drills and failover, and the job listing. Merged into api/openapi.ts's document.
import {
  body,
  common,
  conflict,
  cycleHealth,
  error,
  json,
  listOf,
  machineAction,
  machineErrors,
  machineName,
  point,
  ref,
  type Operation,
  type Schema,
} from './openapi-common';

export const machinePaths: Record<string, Partial<Record<'get' | 'post', Operation>>> = {
  '/v1/machines': {
    get: {
      operationId: 'listMachines',
      summary: 'protected machines with their live status',
      tags: ['machines'],
      responses: {
        '200': {
          description: 'machines',
          ...listOf('machines', 'MachineOverview'),
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
          ...listOf('points', 'RecoveryPoint'),
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
          ...listOf('policies', 'Policy'),
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
      requestBody: body(
        {
          type: 'object',
          additionalProperties: false,
          properties: {
            point,
            another: {
              type: 'boolean',
              description:
                'start it even though a drill of the machine is alive (not cleaned up); without it such a drill is a 409',
            },
          },
        },
        false,
      ),
      responses: {
        '202': { description: 'started', ...json(ref('JobRef')) },
        ...machineErrors,
        '409': error(
          'a drill of this machine is alive (named, with its cleanup); pass "another": true for a second',
        ),
      },
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
          ...listOf('jobs', 'JobRef'),
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
};

export const machineSchemas: Record<string, Schema> = {
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
      ...cycleHealth,
      protectedSince: { type: 'string', format: 'date-time' },
      health: ref('MachineHealth'),
    },
  },
  MachineHealth: {
    type: 'object',
    description: 'computed by shared/machine-health.ts; the rules are in docs/operations.md',
    properties: {
      level: { enum: ['healthy', 'warning', 'critical'] },
      reasons: { type: 'array', items: { type: 'string' }, description: 'worst first; empty when healthy' },
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
        description: 'its protectMachine workflow was ended outside OSR (cancelled, terminated…) or failed',
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
};
