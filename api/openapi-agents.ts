// The OpenAPI description of the agent routes (api/agent-routes.ts).
import {
  body,
  common,
  error,
  json,
  listOf,
  protectionStarted,
  ref,
  type Operation,
  type Schema,
} from './openapi-common';

const agentIdParameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'agent id (ag-…)',
  schema: { type: 'string' },
} as const;

export const agentPaths: Record<string, Partial<Record<'get' | 'post', Operation>>> = {
  '/v1/agents': {
    get: {
      operationId: 'listAgents',
      summary:
        'enrolled Mobility agents: machine, state (connected when its process server saw it in the last 150 s), disks, the room of the point store and its alerts',
      tags: ['agents'],
      responses: { '200': { description: 'agents', ...listOf('agents', 'Agent') }, ...common },
    },
  },
  '/v1/agents/{id}': {
    get: {
      operationId: 'getAgent',
      summary: 'one enrolled agent',
      tags: ['agents'],
      parameters: [agentIdParameter],
      responses: {
        '200': { description: 'the agent', ...json(ref('Agent')) },
        ...common,
        '400': error('not an agent id'),
        '404': error('no such agent'),
      },
    },
  },
  '/v1/agents/{id}/protect': {
    post: {
      operationId: 'protectAgentMachine',
      summary:
        'protect the machine of an enrolled agent (`osr protect <name> --agent <id>`): tracking and points inside it, data over its connection',
      tags: ['agents'],
      parameters: [agentIdParameter],
      requestBody: body({
        type: 'object',
        additionalProperties: false,
        required: ['as'],
        properties: {
          as: { type: 'string', description: 'the name to protect the machine as' },
          policy: { type: 'string' },
          disks: {
            type: 'array',
            items: { type: 'string' },
            description:
              'disks to protect by kernel name (vdb …), not mounted (used as /dev/mapper/osr-<disk>); default: all writable disks',
          },
          pre: {
            type: 'string',
            description:
              'command the agent runs on the machine (sh -c, as root) before an app-consistent point, after /etc/osr-agent/freeze.d/* freeze',
          },
          post: {
            type: 'string',
            description:
              'command the agent runs on the machine after the point, always (before the scripts thaw)',
          },
        },
      }),
      responses: {
        '202': protectionStarted,
        ...common,
        '400': error('not an agent id, or a disk the agent does not have'),
        '404': error('no such agent'),
        '409': error('a machine of that name is protected already'),
      },
    },
  },
  '/v1/agents/{id}/upgrade': {
    post: {
      operationId: 'upgradeAgent',
      summary:
        'upgrade an agent to the version this release ships (`osr agent upgrade`): over its own connection, verified by SHA-256 before it replaces the old one; answers once the new version is connected (or refused, or rolled back by the agent itself)',
      tags: ['agents'],
      parameters: [agentIdParameter],
      requestBody: body({
        type: 'object',
        additionalProperties: false,
        properties: {
          timeout: {
            type: ['integer', 'string'],
            description:
              'how long the new version has to connect before the agent rolls back (default 120 s)',
          },
        },
      }),
      responses: {
        '200': { description: 'upgraded, or already current', ...json(ref('AgentUpgrade')) },
        ...common,
        '400': error('not an agent id, a bad timeout, or the agent is disconnected'),
        '404': error('no such agent'),
        '409': error('the agent refused the bundle (nothing replaced), or an upgrade of it is running'),
        '503': error('the new version did not connect and the agent rolled back'),
      },
    },
  },
  '/v1/agents/{id}/resume': {
    post: {
      operationId: 'resumeAgentWrites',
      summary:
        'give a machine back the writes a planned failover stopped (`osr agent resume`): its agent resumes the suspended disks; a failed or cancelled planned failover does it by itself. Safe to repeat',
      tags: ['agents'],
      parameters: [agentIdParameter],
      responses: {
        '200': {
          description: 'resumed, or no writes were stopped (the result says which)',
          ...json({
            type: 'object',
            required: ['agentId', 'result'],
            properties: { agentId: { type: 'string' }, result: { type: 'string' } },
          }),
        },
        ...common,
        '400': error('not an agent id, or the agent is disconnected'),
        '404': error('no such agent'),
        '409': error('a resume of this agent is running'),
        '503': error('the agent could not resume its disks, or its process server is gone'),
      },
    },
  },
};

export const agentSchemas: Record<string, Schema> = {
  Agent: {
    type: 'object',
    required: ['id', 'facts', 'enrolledAt', 'connected', 'state', 'version', 'outdated', 'alerts'],
    properties: {
      id: { type: 'string' },
      state: { enum: ['connected', 'disconnected'] },
      version: {
        type: 'string',
        description: 'package version + build hash of its bundle (0.1.0+1a2b3c4d5e6f)',
      },
      shippedVersion: { type: 'string', description: 'the version this release ships' },
      outdated: { type: 'boolean', description: 'version differs from shippedVersion: upgrade it' },
      connected: { type: 'boolean', description: 'what its listener last wrote' },
      listener: { type: 'string', description: 'host:port of the process server listener' },
      enrolledAt: { type: 'string', format: 'date-time' },
      connectedAt: { type: 'string', format: 'date-time' },
      lastSeenAt: { type: 'string', format: 'date-time' },
      disconnectedAt: { type: 'string', format: 'date-time' },
      store: {
        type: 'object',
        description:
          'the room of its point store (the filesystem holding its tracking folder), as last reported; absent: an older agent',
        required: ['dir', 'freeBytes', 'sizeBytes', 'at'],
        properties: {
          dir: { type: 'string', description: 'the tracking folder, e.g. /var/lib/osr-agent' },
          freeBytes: { type: 'integer', description: 'available to the agent (statfs)' },
          sizeBytes: { type: 'integer', description: "the filesystem's size; 0: unknown (never judged low)" },
          largestPointBytes: {
            type: 'integer',
            description: 'the most room one of its recent points took (copy-on-write store)',
          },
          overflow: {
            type: 'object',
            description: 'points given up since the last kept one because their store could not grow',
            properties: {
              since: { type: 'string', format: 'date-time' },
              at: { type: 'string', format: 'date-time' },
              count: { type: 'integer' },
              message: { type: 'string' },
            },
          },
          at: { type: 'string', format: 'date-time', description: 'when it was reported' },
          lowSince: { type: 'string', format: 'date-time', description: 'low on room since then' },
        },
      },
      alerts: {
        type: 'array',
        description:
          "its point store's alerts (also on the machine it protects and in /v1/alerts): agent-store-low (warning: free space under agents.storeFreeAlertBytes, or agents.storeFreeAlertPoints times the largest recent point) and agent-store-full (critical: points given up; cleared when one is kept)",
        items: {
          type: 'object',
          required: ['id', 'kind', 'severity', 'at', 'message'],
          properties: {
            id: { type: 'string' },
            kind: { enum: ['agent-store-low', 'agent-store-full'] },
            severity: { enum: ['warning', 'critical'] },
            at: { type: 'string', format: 'date-time' },
            message: { type: 'string', description: 'the free bytes, the threshold and the fix' },
            count: { type: 'integer' },
            lastAt: { type: 'string', format: 'date-time' },
          },
        },
      },
      vm: {
        type: 'object',
        description: 'the VMware VM it protects, when installed with `osr agent install --vm`',
        required: ['host', 'vm', 'moref', 'address'],
        properties: {
          host: { type: 'string', description: 'the vCenter host in OSR' },
          vm: { type: 'string', description: "the VM's name in the vCenter" },
          moref: { type: 'string', description: 'managed object id, e.g. vm-42' },
          instanceUuid: { type: 'string' },
          address: { type: 'string', description: 'the address the agent was pushed to' },
        },
      },
      facts: {
        type: 'object',
        required: ['machineId', 'hostname', 'os', 'kernel', 'agentVersion', 'disks'],
        properties: {
          machineId: { type: 'string' },
          hostname: { type: 'string' },
          os: { type: 'string' },
          kernel: { type: 'string' },
          agentVersion: { type: 'string' },
          disks: {
            type: 'array',
            items: {
              type: 'object',
              required: ['name', 'sizeBytes', 'readOnly'],
              properties: {
                name: { type: 'string' },
                sizeBytes: { type: 'integer' },
                readOnly: { type: 'boolean' },
                serial: { type: 'string' },
                model: { type: 'string' },
              },
            },
          },
        },
      },
    },
  },
  AgentUpgrade: {
    type: 'object',
    required: ['agentId', 'outcome', 'version'],
    properties: {
      agentId: { type: 'string' },
      outcome: { enum: ['upgraded', 'current'] },
      from: { type: 'string' },
      to: { type: 'string' },
      version: { type: 'string', description: 'the version that runs now' },
    },
  },
};
