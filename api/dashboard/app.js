// The OSR dashboard: plain browser JavaScript as ES modules, no build step, no third-party code.
// It reads the API with the bearer token (api.js) and refreshes every few seconds; this module
// holds the refresh loop and starts the page. Every text from the API goes into the page as text
// nodes, never as HTML (dom.js).
/* global document, setTimeout */
import { api, readToken, setupLogin, signOut } from './api.js';
import { renderApprovals } from './approvals.js';
import { renderAudit } from './audit.js';
import { discover, renderHosts } from './discovered.js';
import { renderJobs } from './jobs.js';
import { renderAlerts, renderMachines } from './machines.js';
import { renderPlans } from './plans.js';
import { renderCharts } from './rpo-chart.js';
import { renderServers } from './servers.js';
import { onRefresh, REFRESH_MS, state } from './state.js';

// ---------- refresh loop ----------

async function refresh() {
  if (!state.token || state.busy) return;
  state.busy = true;
  try {
    // Who this token is, and so which buttons to draw: asked once per sign-in.
    if (!state.me) {
      state.me = await api('GET', '/v1/me');
      document.getElementById('identity').textContent = `${state.me.name} (${state.me.role})`;
    }
    const [machines, jobs, alerts, servers, audit, hosts] = await Promise.all([
      api('GET', '/v1/machines'),
      api('GET', '/v1/jobs'),
      api('GET', '/v1/alerts').catch(() => ({ alerts: [] })),
      api('GET', '/v1/servers').catch(() => ({ servers: [] })),
      api('GET', '/v1/audit?limit=8').catch(() => ({ entries: [] })),
      api('GET', '/v1/hosts').catch(() => ({ hosts: [] })),
    ]);
    renderHosts(hosts.hosts);
    renderAlerts(alerts);
    renderMachines(machines.machines, jobs.jobs);
    renderServers(servers.servers);
    renderAudit(audit.entries);
    const protectedCount = machines.machines.filter((m) => m.status && m.status.state === 'protected').length;
    document.getElementById('summary').textContent =
      `${machines.machines.length} machine(s), ${protectedCount} protected · ${jobs.jobs.filter((j) => j.kind !== 'protect').length} running job(s) · ${alerts.alerts.length} alert(s)`;
    await Promise.all([
      renderCharts(machines.machines),
      renderJobs(jobs.jobs),
      renderPlans(),
      renderApprovals(),
    ]);
    document.getElementById('refreshed').textContent =
      `updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
  } catch (err) {
    if (err.status !== 401)
      document.getElementById('refreshed').textContent = `cannot reach the API: ${err.message}`;
  } finally {
    state.busy = false;
  }
}

function start() {
  onRefresh(refresh);
  readToken();
  setupLogin();
  document.getElementById('discover').addEventListener('click', () => discover());
  if (!state.token) signOut('');
  else refresh().then(() => discover());
  (function loop() {
    setTimeout(() => {
      refresh().finally(loop);
    }, REFRESH_MS);
  })();
}

start();
