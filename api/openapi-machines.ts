// The OpenAPI description of the machine routes (api/routes.ts): machines, their points and
// updates, policies, drills and failover, and the job listing. Merged into api/openapi.ts's document.
import {
  body,
  common,
  conflict,
  closedObject,
  cycleHealth,
  error,
  json,
  listOf,
  machineAction,
  machineErrors,
  machineName,
  object,
  objects,
  point,
  protectionStarted,
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
      summary: "a machine's state, RPO, last points, alerts, sync progress and Azure readiness",
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
        closedObject({
          kind: { enum: ['crash', 'app'], default: 'crash' },
          tag: { type: 'string', minLength: 1 },
        }),
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
      requestBody: body(closedObject({ reason: { type: 'string' } }), false),
    }),
  },
  '/v1/machines/{name}/resume': { post: machineAction('resume', 'resume cutting points') },
  '/v1/machines/{name}/protect': {
    post: {
      operationId: 'protectAgain',
      summary:
        'protect again a machine the vault knows (after unprotect with keepReplica, or on a new Temporal); a new machine is protected from its host (POST /v1/hosts/{name}/protect)',
      tags: ['machines'],
      parameters: [machineName],
      responses: {
        '202': protectionStarted,
        ...machineErrors,
        '409': error('already protected'),
      },
    },
  },
  '/v1/machines/{name}/unprotect': {
    post: machineAction(
      'unprotect',
      'stop protecting: removes its change tracking, and its replica and points unless keepReplica',
      { requestBody: body(closedObject({ keepReplica: { type: 'boolean', default: false } }), false) },
    ),
  },
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
      requestBody: body(
        closedObject(
          {
            name: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
            rpo: ref('Duration'),
            crashEvery: ref('Duration'),
            appEvery: ref('Duration'),
            retention: ref('Duration'),
            keepAll: ref('Duration'),
            bandwidthLimit: {
              type: 'string',
              pattern: '^(none|0|\\d+(\\.\\d+)?\\s*([kKmMgG]?bit)?(/s)?)$',
              description:
                'upload limit of all its machines together per process server, e.g. 50Mbit; none: no limit',
            },
          },
          ['name'],
        ),
      ),
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
        closedObject({
          point,
          another: {
            type: 'boolean',
            description:
              'start it even though a drill of the machine is alive (not cleaned up); without it such a drill is a 409',
          },
        }),
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
        closedObject({
          point: { ...point, description: `unplanned only: ${point.description}` },
          planned: {
            type: 'boolean',
            description: "stop the source's writes and cut a final point first",
          },
        }),
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
      requestBody: body(closedObject({ point }, ['point'])),
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
  Policy: object({
    name: 'string',
    rpoThresholdSeconds: 'integer',
    crashPointSeconds: 'integer',
    appPointSeconds: 'integer',
    retentionHours: 'number',
    keepAllMinutes: 'integer',
    bandwidthLimitBitsPerSecond: 'integer',
  }),
  PointRef: object({ id: 'string', instant: 'date-time', kind: { enum: ['crash', 'app'] } }),
  RecoveryPoint: object(
    {
      id: 'string',
      machine: 'string',
      cycle: 'integer',
      instant: {
        type: 'string',
        format: 'date-time',
        description: "the freeze on Temporal's clock (the primary's own reading when the clocks agree)",
      },
      sourceInstant: {
        type: 'string',
        format: 'date-time',
        description: "the primary host's clock at the freeze (absent on points cut before OSR kept it)",
      },
      protection: {
        type: 'string',
        description:
          'which protection of the machine cut the point; points are listed by protection, then cycle',
      },
      kind: { enum: ['crash', 'app'] },
      tag: 'string',
      disks: objects,
      createdAt: 'date-time',
    },
    'oldest first, in the order the points were cut (never by a clock)',
  ),
  MachineStatus: object({
    machine: 'string',
    state: 'string',
    policy: ref('Policy'),
    disks: objects,
    cycle: 'integer',
    progress: objects,
    lastPoint: ref('PointRef'),
    lastAppPoint: ref('PointRef'),
    rpoSeconds: 'number',
    ...cycleHealth,
    protectedSince: 'date-time',
    health: ref('MachineHealth'),
    azureReadiness: ref('AzureReadiness'),
  }),
  AzureReadiness: object(
    {
      checked: {
        type: 'boolean',
        description: 'false: no guest agent, or it could not run the check (see reason)',
      },
      checkedAt: 'date-time',
      ready: 'boolean',
      kernel: { type: 'string', description: 'the running kernel release whose drivers were looked at' },
      problems: {
        type: 'array',
        items: object({ what: 'string', fix: 'string' }),
      },
      notes: { type: 'array', items: { type: 'string' }, description: 'what could not be looked at' },
      reason: { type: 'string', description: 'why it was not checked (checked false)' },
    },
    'what the guest showed at protect through its guest agent: Hyper-V drivers, MAC-bound network configuration, device names in /etc/fstab and root=',
  ),
  MachineHealth: object(
    {
      level: { enum: ['healthy', 'warning', 'critical'] },
      reasons: { type: 'array', items: { type: 'string' }, description: 'worst first; empty when healthy' },
    },
    'computed by shared/machine-health.ts; the rules are in docs/operations.md',
  ),
  MachineOverview: object({
    machine: 'string',
    registered: 'boolean',
    status: ref('MachineStatus'),
    note: 'string',
    ended: object(
      {
        state: { enum: ['ended-outside-osr', 'failed'] },
        workflowId: 'string',
        closedAs: { enum: ['canceled', 'terminated', 'failed', 'timed-out', 'missing'] },
        closedAt: 'date-time',
        reason: 'string',
        fix: 'string',
      },
      'its protectMachine workflow was ended outside OSR (cancelled, terminated…) or failed',
    ),
    health: ref('MachineHealth'),
  }),
  JobRef: object({
    job: 'string',
    workflowId: 'string',
    machine: 'string',
    kind: { enum: ['drill', 'drill-cleanup', 'failover'] },
    pointId: 'string',
    location: { type: 'string', description: 'GET it to follow the job' },
  }),
  Job: object({
    workflowId: 'string',
    runId: 'string',
    kind: 'string',
    machine: 'string',
    state: 'string',
    status: 'string',
    startTime: 'date-time',
    summary: 'string',
  }),
  RecoveryStatus: object({
    job: 'string',
    kind: { enum: ['drill', 'drill-cleanup', 'failover'] },
    machine: 'string',
    state: { enum: ['running', 'ready', 'cleaned-up', 'failed-over', 'committed', 'failed'] },
    planned: 'boolean',
    point: ref('PointRef'),
    disks: objects,
    error: 'string',
    steps: objects,
  }),
};
