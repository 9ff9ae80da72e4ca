// Who may call what: the one table of the role each route needs. A route missing here is refused
// when the router is built (and test/unit/access.test.ts names it), so a new route cannot ship
// open by accident. Roles are ranked: an operator may do what a viewer may, an admin everything.
import { hasRole, type Role } from '../shared/roles';
import type { Method } from './router';

/** `public`: no token (liveness, the OpenAPI document, the dashboard's static files). */
export type Access = Role | 'public';

/** Whether an identity holding `held` may call a route that needs `needed`. */
export function allows(held: Role, needed: Access): boolean {
  return needed === 'public' || hasRole(held, needed);
}

export const routeKey = (method: Method | string, path: string) => `${method} ${path}`;

/**
 * viewer: reads. operator: drills, points, resync/resume, approvals. admin: what fails over,
 * commits, fails back or changes protection and configuration (policies, plans, groups, tokens).
 * Routes for hosts and agents go here too, with the role they need.
 */
export const ROUTE_ACCESS: Record<string, Access> = {
  'GET /healthz': 'public',
  'GET /openapi.json': 'public',
  'GET /': 'public',
  // The dashboard's script and style files (api/dashboard-files.ts) are public like its page.
  'GET /dashboard/*': 'public',

  'GET /v1/me': 'viewer',
  'GET /v1/machines': 'viewer',
  'GET /v1/machines/{name}': 'viewer',
  'GET /v1/machines/{name}/points': 'viewer',
  'GET /v1/machines/{name}/reprotect': 'viewer',
  'GET /v1/policies': 'viewer',
  'GET /v1/sites/{site}': 'viewer',
  'GET /v1/jobs': 'viewer',
  'GET /v1/jobs/{workflowId}': 'viewer',
  'GET /v1/plans': 'viewer',
  'GET /v1/plans/{name}': 'viewer',
  'GET /v1/groups': 'viewer',
  'GET /v1/groups/{name}': 'viewer',
  'GET /v1/groups/{name}/points': 'viewer',
  'GET /v1/approvals': 'viewer',
  'GET /v1/alerts': 'viewer',
  'GET /v1/audit': 'viewer',
  'GET /v1/servers': 'viewer',
  'GET /v1/hosts': 'viewer',
  'GET /v1/hosts/{name}': 'viewer',
  'GET /v1/machines/{name}/recovery-settings': 'viewer',
  // Discovery asks each host's process server to read the host's inventory (a job, not a read).
  'GET /v1/discover': 'operator',
  'GET /v1/agents': 'viewer',
  'GET /v1/agents/{id}': 'viewer',
  'GET /metrics': 'viewer',

  'POST /v1/machines/{name}/points': 'operator',
  'POST /v1/machines/{name}/resync': 'operator',
  'POST /v1/machines/{name}/resume': 'operator',
  'POST /v1/machines/{name}/test-failover': 'operator',
  'POST /v1/machines/{name}/test-failover/cleanup': 'operator',
  'POST /v1/plans/{name}/test-failover': 'operator',
  'POST /v1/plans/{name}/test-failover/cleanup': 'operator',
  'POST /v1/groups/{name}/points': 'operator',
  'POST /v1/plan-jobs/{job}/approve': 'operator',
  // Approving a failover or commit another identity asked for (never one's own).
  'POST /v1/approvals/{id}/approve': 'operator',
  'POST /v1/approvals/{id}/reject': 'operator',

  'POST /v1/machines/{name}/pause': 'admin',
  'POST /v1/machines/{name}/failover': 'admin',
  'POST /v1/machines/{name}/failover/commit': 'admin',
  'POST /v1/machines/{name}/failover/change-point': 'admin',
  'POST /v1/machines/{name}/reprotect': 'admin',
  'POST /v1/machines/{name}/reprotect/stop': 'admin',
  'POST /v1/machines/{name}/failback': 'admin',
  'POST /v1/machines/{name}/reenable': 'admin',
  'POST /v1/machines/{name}/protect': 'admin',
  'POST /v1/machines/{name}/unprotect': 'admin',
  'POST /v1/plans/{name}/failover': 'admin',
  'POST /v1/plan-jobs/{job}/commit': 'admin',
  'POST /v1/plans/{name}/reprotect': 'admin',
  'POST /v1/plans/{name}/failback': 'admin',
  'POST /v1/plans/{name}/reenable': 'admin',
  'POST /v1/policies': 'admin',
  'POST /v1/sites/{site}/bandwidth-limit': 'admin',
  'POST /v1/plans': 'admin',
  'POST /v1/groups': 'admin',
  'POST /v1/groups/{name}/delete': 'admin',
  'POST /v1/hosts': 'admin',
  'POST /v1/hosts/{name}/remove': 'admin',
  'POST /v1/hosts/{name}/protect': 'admin',
  'POST /v1/agents/{id}/protect': 'admin',
  'POST /v1/agents/{id}/upgrade': 'admin',
  'POST /v1/agents/{id}/resume': 'operator',
  'POST /v1/machines/{name}/recovery-settings': 'admin',
  'GET /v1/tokens': 'admin',
  'POST /v1/tokens': 'admin',
  'POST /v1/tokens/{name}/revoke': 'admin',
};

/** The access a route needs, or undefined when the table lacks it. */
export function accessOf(method: string, path: string): Access | undefined {
  const exact = ROUTE_ACCESS[routeKey(method, path)];
  if (exact !== undefined) return exact;
  return method === 'GET' && /^\/dashboard\/[\w.-]+$/.test(path)
    ? ROUTE_ACCESS['GET /dashboard/*']
    : undefined;
}

/** Refuses to build a router with a route the table does not name. */
export function checkAccessTable(routes: ReadonlyArray<{ method: string; path: string }>): void {
  const missing = routes.filter((r) => accessOf(r.method, r.path) === undefined);
  if (missing.length)
    throw new Error(
      `routes without a role in api/access.ts ROUTE_ACCESS: ${missing.map((r) => routeKey(r.method, r.path)).join(', ')}`,
    );
}
