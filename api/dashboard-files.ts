// The dashboard's files (api/dashboard/), an explicit allowlist: each URL is served from the file
// named here, never from a path taken from the URL. app.js is an ES module that imports the other
// scripts; a new one is served once it is listed here (test/unit/dashboard-files.test.ts checks the
// list against the folder). api/operator-routes.ts serves them, api/openapi-operator.ts documents them.

const JS = 'text/javascript; charset=utf-8';

export interface DashboardFile {
  /** The URL path. */
  path: string;
  /** The file in api/dashboard/. */
  file: string;
  type: string;
  operationId: string;
  summary: string;
}

const script = (file: string, operationId: string, summary: string): DashboardFile => ({
  path: `/dashboard/${file}`,
  file,
  type: JS,
  operationId,
  summary,
});

export const dashboardFiles: readonly DashboardFile[] = [
  {
    path: '/',
    file: 'index.html',
    type: 'text/html; charset=utf-8',
    operationId: 'dashboard',
    summary: 'the operator dashboard (HTML; asks for the token once, or reads #token=… from the URL)',
  },
  {
    path: '/dashboard/style.css',
    file: 'style.css',
    type: 'text/css; charset=utf-8',
    operationId: 'dashboardStyle',
    summary: "the dashboard's style sheet",
  },
  script(
    'app.js',
    'dashboardScript',
    "the dashboard's script (an ES module: the refresh loop; imports the others)",
  ),
  script('state.js', 'dashboardState', "the dashboard's shared state (ES module)"),
  script('dom.js', 'dashboardDom', "the dashboard's element and formatting helpers (ES module)"),
  script('api.js', 'dashboardApi', "the dashboard's API calls and sign-in (ES module)"),
  script('actions.js', 'dashboardActions', "the dashboard's confirmed actions (ES module)"),
  script('machines.js', 'dashboardMachines', "the dashboard's alerts and machines table (ES module)"),
  script('rpo-chart.js', 'dashboardRpoChart', "the dashboard's RPO-over-time charts (ES module)"),
  script('jobs.js', 'dashboardJobs', "the dashboard's jobs list (ES module)"),
  script('plans.js', 'dashboardPlans', "the dashboard's recovery plans (ES module)"),
  script(
    'approvals.js',
    'dashboardApprovals',
    "the dashboard's requests waiting for a second identity's approval (ES module)",
  ),
  script('servers.js', 'dashboardServers', "the dashboard's process servers table (ES module)"),
  script('audit.js', 'dashboardAudit', "the dashboard's recent operator actions (ES module)"),
  script(
    'discovered.js',
    'dashboardDiscovered',
    "the dashboard's hosts (which lost its process server) and discovered machines with Protect (ES module)",
  ),
];
