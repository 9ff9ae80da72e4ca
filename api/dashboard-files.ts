// The dashboard's files (api/dashboard/), an explicit allowlist: each URL is served from the file
// named here, never from a path taken from the URL; a new file is served once it is listed here.
// api/operator-routes.ts serves them, api/openapi-operator.ts documents them.

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
  script('app.js', 'dashboardScript', "the dashboard's script"),
];
