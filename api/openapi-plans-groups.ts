// The OpenAPI description of the plan and consistency-group routes (api/plan-group-routes.ts).
// Merged into api/openapi.ts's document.
import {
  body,
  common,
  conflict,
  cycleHealth,
  error,
  groupName,
  json,
  listOf,
  planJobId,
  planJobStart,
  planName,
  point,
  ref,
  type Operation,
  type Schema,
} from './openapi-common';

export const planGroupPaths: Record<string, Partial<Record<'get' | 'post', Operation>>> = {
  '/v1/plans': {
    get: {
      operationId: 'listPlans',
      summary: 'the recovery plans',
      tags: ['plans'],
      responses: {
        '200': {
          description: 'plans',
          ...listOf('plans', 'Plan'),
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
        properties: {
          name: { type: 'string' },
          groups: { type: 'array', items: ref('PlanGroup') },
          networks: {
            type: 'array',
            description:
              'azure target: machines whose settings name `source` as their sourceNetwork land on these subnets when the plan recovers them; libvirt target: a NIC on the primary-site network (or bridge) `source` goes on the libvirt network `libvirtNetwork`. Each mapping gives subnetId or libvirtNetwork (or both)',
            items: {
              type: 'object',
              required: ['source'],
              additionalProperties: false,
              properties: {
                source: { type: 'string' },
                subnetId: { type: 'string' },
                libvirtNetwork: { type: 'string' },
                drillSubnetId: { type: 'string' },
                drillOnProductionSubnet: { type: 'boolean' },
              },
            },
          },
          requireApproval: {
            type: 'boolean',
            description: "its failover and commit wait for another identity's approval (/v1/approvals)",
          },
        },
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
          ...listOf('groups', 'Group'),
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
        '400': error(
          'bad body or field, or members the group cannot hold (sites, hosts, an agent of another build than this release: upgrade it)',
        ),
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
          ...listOf('points', 'GroupPoint'),
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
};

export const planGroupSchemas: Record<string, Schema> = {
  Plan: {
    type: 'object',
    properties: {
      name: { type: 'string' },
      groups: { type: 'array', items: ref('PlanGroup') },
      requireApproval: { type: 'boolean' },
    },
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
      ...cycleHealth,
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
      methods: {
        type: 'array',
        description: "how each member's writes were held during the cut",
        items: {
          type: 'object',
          properties: {
            machine: { type: 'string' },
            method: {
              type: 'string',
              enum: [
                'qmp-stop',
                'libvirt-suspend',
                'guest-agent',
                'quiesce-hook',
                'agent-hold',
                'already-paused',
              ],
            },
          },
        },
      },
      consistent: { type: 'boolean' },
    },
  },
};
