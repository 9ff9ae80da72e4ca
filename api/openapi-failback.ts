// The OpenAPI description of the failback routes (api/failback-routes.ts): reprotect, failback and
// re-enable of one machine or a plan. Merged into api/openapi.ts's document.
import { error, json, ref, type Schema } from './openapi-common';

const name = (what: string) => ({
  name: 'name',
  in: 'path' as const,
  required: true,
  description: what,
  schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
});
const errors = {
  '400': error('bad body or field; the message names the field and the fix'),
  '401': error('no or wrong bearer token (WWW-Authenticate: Bearer)'),
  '404': error('no such machine or plan'),
  '409': error(
    'the stage cannot run now (e.g. reprotect of a machine that was not failed over and committed); the message says what to do',
  ),
  '503': error('Temporal or storage unavailable'),
};
const started = { '202': { description: 'started; follow it at Location', ...json(ref('FailbackJobRef')) } };

export const failbackPaths = {
  '/v1/machines/{name}/reprotect': {
    post: {
      operationId: 'startReprotect',
      summary:
        'replicate a failed-over, committed machine (materialized, or recovered into libvirt) back onto its original disks: diff resync, then reverse delta cycles; an original libvirt domain is shut off while they are written; a machine with the Mobility agent has them written by its agent once nothing on it uses them (unmount them first)',
      tags: ['failback'],
      parameters: [name('machine name')],
      requestBody: {
        required: false,
        content: {
          'application/json': {
            schema: {
              type: 'object',
              additionalProperties: false,
              properties: {
                interval: {
                  description:
                    'seconds between reverse cycles, or "30s", "5m"… (default: the policy\'s crash-point interval)',
                  oneOf: [{ type: 'integer', minimum: 1 }, { type: 'string' }],
                },
                pre: {
                  type: 'string',
                  description: "stops the recovery-site copy's writers (failback runs it)",
                },
                post: { type: 'string', description: "resumes the recovery-site copy's writers" },
              },
            },
          },
        },
      },
      responses: { ...started, ...errors },
    },
    get: {
      operationId: 'reprotectStatus',
      summary: 'reverse replication of a machine: state, cycles, bytes sent, progress',
      tags: ['failback'],
      parameters: [name('machine name')],
      responses: {
        '200': { description: 'the reprotect status', ...json(ref('ReprotectStatus')) },
        ...errors,
      },
    },
  },
  '/v1/machines/{name}/reprotect/stop': {
    post: {
      operationId: 'stopReprotect',
      summary: 'give reverse replication up; the machine keeps running in the recovery site',
      description:
        "The original disks go back to the master target's last point (their pre-reprotect content when no cycle was applied); the master target's exports, storage daemon, journals and the reverse checkpoints go. A libvirt original stays shut off, ready to start.",
      tags: ['failback'],
      parameters: [name('machine name')],
      responses: {
        '200': { description: 'the stopped reprotect', ...json(ref('ReprotectStatus')) },
        ...errors,
      },
    },
  },
  '/v1/machines/{name}/failback': {
    post: {
      operationId: 'startFailback',
      summary:
        'planned failover to the primary site: stop writes in the recovery site, final cycle, the machine runs on its original disks',
      tags: ['failback'],
      parameters: [name('machine name')],
      responses: { ...started, ...errors },
    },
  },
  '/v1/machines/{name}/reenable': {
    post: {
      operationId: 'startReenable',
      summary:
        'forward replication again after failback: a resync against the kept replica, never a full copy',
      tags: ['failback'],
      parameters: [name('machine name')],
      responses: { ...started, ...errors },
    },
  },
  ...Object.fromEntries(
    (['reprotect', 'failback', 'reenable'] as const).map((stage) => [
      `/v1/plans/{name}/${stage}`,
      {
        post: {
          operationId: `plan${stage[0]?.toUpperCase()}${stage.slice(1)}`,
          summary: `${stage} every machine of a plan: groups in order, the machines of a group at once`,
          tags: ['failback'],
          parameters: [name('plan name')],
          responses: {
            '202': {
              description: 'the plan job started (plan/<plan>/<stage>/<job>); follow it at Location',
              ...json(ref('FailbackJobRef')),
            },
            ...errors,
          },
        },
      },
    ]),
  ),
};

export const failbackSchemas: Record<string, Schema> = {
  FailbackJobRef: {
    type: 'object',
    required: ['workflowId', 'location'],
    properties: { workflowId: { type: 'string' }, location: { type: 'string' } },
  },
  ReprotectStatus: {
    type: 'object',
    description: 'see workflows/failback-api.ts ReprotectStatus',
    required: ['machine', 'state', 'cycles', 'disks'],
    properties: {
      machine: { type: 'string' },
      job: { type: 'string' },
      failoverJob: { type: 'string' },
      state: { enum: ['preparing', 'resyncing', 'protected', 'final-cycle', 'synced', 'stopped'] },
      cycle: { type: 'integer' },
      cycles: { type: 'integer' },
      failedCycles: { type: 'integer' },
      lastApplied: { type: 'object' },
      progress: { type: 'array', items: { type: 'object' } },
      disks: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            diskId: { type: 'string' },
            sentBytes: { type: 'integer' },
            rawBytes: { type: 'integer' },
            resyncRawBytes: { type: 'integer' },
            resyncSentBytes: { type: 'integer' },
            resyncMode: { enum: ['resync', 'full'] },
          },
        },
      },
      alerts: { type: 'array', items: { type: 'object' } },
    },
  },
};
