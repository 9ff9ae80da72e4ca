// Routes for operators: Prometheus metrics, current alerts, the audit log, process-server health
// and the dashboard (a static page, its scripts and style from the allowlist in dashboard-files.ts,
// no token needed to load them; every call the page makes carries the bearer token like any client).
import fs from 'node:fs';
import path from 'node:path';
import { listServers } from '../lib/observability/server-health';
import { listAlerts } from '../operations/alerts';
import { listAudit } from '../operations/audit';
import { OperationError } from '../operations/context';
import { PROMETHEUS_CONTENT_TYPE } from '../lib/observability/prometheus';
import { dashboardFiles } from './dashboard-files';
import { renderMetrics } from './metrics';
import type { ApiResponse, Route } from './router';

const ok = (body: unknown): ApiResponse => ({ status: 200, body });

/** The dashboard's files: api/dashboard in the source tree (dist/api/… runs two levels below it). */
function dashboardDir(): string {
  const candidates = [
    path.resolve(__dirname, '..', '..', 'api', 'dashboard'),
    path.resolve(__dirname, 'dashboard'),
  ];
  return candidates.find((d) => fs.existsSync(path.join(d, 'index.html'))) ?? (candidates[0] as string);
}

const STATIC_HEADERS = {
  'Cache-Control': 'no-cache',
  // Everything the page loads comes from this server; no inline script, no framing.
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

function staticFile(file: string, type: string): Route['handler'] {
  return () => {
    let text: string;
    try {
      text = fs.readFileSync(path.join(dashboardDir(), file), 'utf8');
    } catch {
      throw new OperationError(`the dashboard file ${file} is missing from ${dashboardDir()}`, 'not-found');
    }
    return { status: 200, body: undefined, text, headers: { ...STATIC_HEADERS, 'Content-Type': type } };
  };
}

function intQuery(value: string | null, name: string): number | undefined {
  if (value === null) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new OperationError(`query "${name}": a whole number`, 'invalid');
  return n;
}

export const operatorRoutes: Route[] = [
  ...dashboardFiles.map((f): Route => ({ method: 'GET', path: f.path, handler: staticFile(f.file, f.type) })),
  {
    method: 'GET',
    path: '/metrics',
    handler: async (req) => ({
      status: 200,
      body: undefined,
      text: await renderMetrics(req.ctx),
      headers: { 'Content-Type': PROMETHEUS_CONTENT_TYPE },
    }),
  },
  {
    method: 'GET',
    path: '/v1/alerts',
    handler: async (req) => ok(await listAlerts(req.ctx)),
  },
  {
    method: 'GET',
    path: '/v1/audit',
    handler: async (req) =>
      ok({
        entries: await listAudit(req.ctx, {
          since: req.query.get('since') ?? undefined,
          until: req.query.get('until') ?? undefined,
          limit: intQuery(req.query.get('limit'), 'limit'),
          action: req.query.get('action') ?? undefined,
          target: req.query.get('target') ?? undefined,
          user: req.query.get('user') ?? undefined,
        }),
      }),
  },
  {
    method: 'GET',
    path: '/v1/servers',
    handler: async (req) => ok({ servers: await listServers(req.ctx.vault, req.ctx.config) }),
  },
];
