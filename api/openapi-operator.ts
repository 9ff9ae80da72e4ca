// The OpenAPI description of the operator routes (api/operator-routes.ts): metrics, alerts,
// audit log, servers and the dashboard's static files (api/dashboard-files.ts). Merged into
// api/openapi.ts's document.
import { dashboardFiles } from './dashboard-files';
import { error, json, listOf, ref, type Schema } from './openapi-common';

const common = {
  '401': error('no or wrong bearer token (WWW-Authenticate: Bearer)'),
  '503': error('Temporal or storage unavailable'),
};
const query = (name: string, description: string, schema: Schema = { type: 'string' }) => ({
  name,
  in: 'query' as const,
  required: false,
  description,
  schema,
});
const staticFile = (operationId: string, summary: string, type: string) => ({
  get: {
    operationId,
    summary,
    tags: ['dashboard'],
    security: [],
    responses: { '200': { description: summary, content: { [type]: { schema: { type: 'string' } } } } },
  },
});

export const operatorPaths = {
  ...Object.fromEntries(
    dashboardFiles.map((f) => [f.path, staticFile(f.operationId, f.summary, f.type.split(';')[0] as string)]),
  ),
  '/metrics': {
    get: {
      operationId: 'metrics',
      summary:
        "Prometheus metrics: per machine RPO, threshold, state, bytes changed and sent, compression, cycles, backlog; per worker CPU, memory, pipeline; jobs; alerts; and every live worker's Temporal SDK metrics (labels osr_role, osr_server)",
      description:
        'Same bearer token as /v1 (Prometheus: `authorization: { credentials_file: .osr/api/token }`). Built at scrape time; a source that cannot be read shows as osr_up{source=…} 0.',
      tags: ['operations'],
      responses: {
        '200': {
          description: 'text exposition format 0.0.4',
          content: { 'text/plain': { schema: { type: 'string' } } },
        },
        ...common,
      },
    },
  },
  '/v1/alerts': {
    get: {
      operationId: 'listAlerts',
      summary:
        'current alerts: machines (RPO, failed cycles, resync needed…), failed recovery jobs of the last 24 h, failed drill boot checks, process-server pressure or silence',
      tags: ['operations'],
      responses: {
        '200': {
          description: 'alerts, newest first; problems lists sources that could not be read',
          ...json({
            type: 'object',
            properties: {
              alerts: { type: 'array', items: ref('Alert') },
              problems: { type: 'array', items: { type: 'string' } },
            },
          }),
        },
        ...common,
      },
    },
  },
  '/v1/audit': {
    get: {
      operationId: 'listAudit',
      summary: 'the audit log of operator actions (who, what, when, outcome), newest first',
      tags: ['operations'],
      parameters: [
        query('since', 'ISO time or date (default: 30 days before until)'),
        query('until', 'ISO time or date (default: now)'),
        query('limit', 'at most this many entries (1-1000, default 100)', { type: 'integer' }),
        query('action', 'an action (failover.start) or a prefix of actions (failover)'),
        query('target', 'a machine, plan, policy or job'),
        query('user', 'an OS user (CLI) or "token" (API)'),
      ],
      responses: {
        '200': {
          description: 'entries',
          ...listOf('entries', 'AuditEntry'),
        },
        '400': error('a query parameter is malformed'),
        ...common,
      },
    },
  },
  '/v1/servers': {
    get: {
      operationId: 'listServers',
      summary:
        'OSR worker processes from their heartbeats (CPU, memory, event-loop lag, pipeline), stale ones marked',
      tags: ['operations'],
      responses: {
        '200': {
          description: 'servers by role',
          ...listOf('servers', 'Server'),
        },
        ...common,
      },
    },
  },
};

export const operatorSchemas: Record<string, Schema> = {
  Alert: {
    type: 'object',
    required: ['id', 'source', 'kind', 'severity', 'at', 'message'],
    properties: {
      id: {
        type: 'string',
        description: 'global and stable while the condition lasts; the webhook sends each once',
      },
      source: { enum: ['machine', 'group', 'job', 'server'] },
      kind: { type: 'string' },
      severity: { enum: ['warning', 'critical'] },
      at: { type: 'string', format: 'date-time' },
      message: { type: 'string', description: 'the latest occurrence' },
      count: { type: 'integer', description: 'how many times the problem was seen (one alert per problem)' },
      lastAt: {
        type: 'string',
        format: 'date-time',
        description: 'when it was last seen; `at` is the first',
      },
      machine: { type: 'string' },
      group: { type: 'string', description: "a consistency group's alert (source group)" },
      machines: { type: 'array', items: { type: 'string' }, description: "the group's members" },
      plan: { type: 'string' },
      workflowId: { type: 'string' },
      server: { type: 'string' },
    },
  },
  AuditEntry: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      at: { type: 'string', format: 'date-time' },
      endedAt: { type: 'string', format: 'date-time' },
      durationMs: { type: 'integer' },
      actor: {
        type: 'object',
        properties: {
          via: { enum: ['cli', 'api', 'process'] },
          user: { type: 'string' },
          host: { type: 'string' },
          address: { type: 'string' },
          claimedOperator: { type: 'string', description: 'X-OSR-Operator header, not verified' },
        },
      },
      action: { type: 'string' },
      target: { type: 'string' },
      details: { type: 'object' },
      outcome: { enum: ['ok', 'refused', 'failed'] },
      code: { type: 'string' },
      error: { type: 'string' },
    },
  },
  Server: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      role: { type: 'string' },
      site: { type: 'string' },
      host: { type: 'string' },
      pid: { type: 'integer' },
      taskQueue: { type: 'string' },
      startedAt: { type: 'string', format: 'date-time' },
      at: { type: 'string', format: 'date-time', description: 'last heartbeat' },
      ageSeconds: { type: 'integer' },
      stale: { type: 'boolean' },
      cpuPercent: { type: 'number' },
      rssBytes: { type: 'integer' },
      heapUsedBytes: { type: 'integer' },
      heapLimitBytes: { type: 'integer' },
      eventLoopLagMs: { type: 'object' },
      activitiesInFlight: { type: 'integer' },
      pipeline: { type: 'object' },
      sdkMetricsUrl: { type: 'string' },
      alerts: { type: 'array', items: { type: 'object' } },
      notifier: { type: 'object' },
    },
  },
};
