// What an operator sees of OSR, against the real stack: Prometheus metrics (OSR's and every
// worker's Temporal SDK metrics), process-server heartbeats, current alerts and the webhook
// (retried, sent once, not resent after a restart of the control worker), the audit log from the
// API and the CLI, and the dashboard in headless Chromium (a drill started by clicks).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { startApiServer, type ApiServer } from '../../api/server';
import type { ServerView } from '../../lib/observability/server-health';
import type { OsrAlert } from '../../operations/alerts';
import type { AuditEntry } from '../../operations/audit';
import { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import * as plans from '../../operations/plans';
import { createPolicy } from '../../operations/policies';
import { createLogger } from '../../lib/config/logger';
import type { WebhookPayload } from '../../workers/alert-notifier';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const M = 'op-vm1';
const token = randomBytes(32).toString('base64url');
const webhookSecret = randomBytes(24).toString('hex');
const cliMain = path.resolve(__dirname, '..', '..', 'cli', 'main.js');
const shots = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-dashboard-'));

interface Delivery {
  payload: WebhookPayload;
  signature: string | undefined;
  body: string;
  answered: number;
}

let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
let api: ApiServer;
let webhook: http.Server;
const deliveries: Delivery[] = [];
const failedOnce = new Set<string>();

before(async () => {
  // The webhook receiver answers 500 to the first attempt of each alert: the notifier must retry.
  webhook = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const payload = JSON.parse(body) as WebhookPayload;
      const status = failedOnce.has(payload.alert.id) ? 200 : 500;
      failedOnce.add(payload.alert.id);
      deliveries.push({
        payload,
        body,
        signature: req.headers['x-osr-signature'] as string,
        answered: status,
      });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  const { port } = webhook.address() as AddressInfo;
  stack = await startTestStack({
    extraEnv: {
      OSR_ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/hooks/osr`,
      OSR_ALERT_WEBHOOK_SECRET: webhookSecret,
      OSR_ALERT_INTERVAL_SECONDS: '1',
      OSR_HEARTBEAT_SECONDS: '1',
      OSR_HEALTH_STALE_SECONDS: '6',
    },
  });
  await Promise.all([
    stack.startWorker('control'),
    stack.startWorker('cloud-applier'),
    // Any process uses more than 1 byte: this process server reports memory pressure.
    stack.startWorker('process-server', { OSR_HEALTH_RSS_ALERT_BYTES: '1' }),
  ]);
  ctx = new ControlContext(stack.config);
  await createPolicy(ctx, {
    name: 'manual',
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
  });
  vm = await startTestMachine({ sizes: [16 * MiB] });
  await machines.protect(ctx, {
    name: M,
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(ctx, M, (s) => s.state === 'protected');
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(2 * MiB, 11));
  await disk.flush();
  await machines.takePoint(ctx, M, { kind: 'crash', tag: 'operator-test' });
  api = await startApiServer({
    config: stack.config,
    token,
    host: '127.0.0.1',
    port: 0,
    ctx,
    logger: createLogger('api-test', 'warn'),
  });
});

after(async () => {
  await api?.close();
  await vm?.stop();
  await ctx?.close();
  await stack?.stop();
  await new Promise((r) => webhook?.close(r));
  if (!process.env.OSR_KEEP_TEST_STATE) fs.rmSync(shots, { recursive: true, force: true });
  else process.stdout.write(`dashboard screenshots in ${shots}\n`);
});

async function get(pathname: string, headers: Record<string, string> = {}) {
  return fetch(`${api.url}${pathname}`, { headers: { authorization: `Bearer ${token}`, ...headers } });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what} ${last ? String(last) : ''}`);
}

async function servers(): Promise<ServerView[]> {
  return ((await (await get('/v1/servers')).json()) as { servers: ServerView[] }).servers;
}

/** Parses exposition text: family → type, and samples; fails on a sample outside a declared family. */
function parseExposition(text: string) {
  const types = new Map<string, string>();
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      assert.ok(!types.has(type[1] as string), `family ${type[1]} declared once`);
      types.set(type[1] as string, type[2] as string);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a valid sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[k as string] = v as string;
    const name = m[1] as string;
    const family = [...types.keys()].find((f) => name === f || name.startsWith(`${f}_`));
    assert.ok(family, `sample ${name} belongs to a declared family`);
    samples.push({ name, labels, value: Number(m[3]) });
  }
  return { types, samples };
}

test('GET /metrics: per-machine replication metrics, worker health and the Temporal SDK metrics of every worker', async () => {
  assert.equal((await fetch(`${api.url}/metrics`)).status, 401, 'the same bearer token as /v1');
  // The SDK exporters are named in the heartbeats; wait for all three workers.
  await until('three heartbeats', async () => ((await servers()).length >= 3 ? true : undefined));
  const res = await get('/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const { types, samples } = parseExposition(await res.text());
  const one = (name: string, labels: Record<string, string>) =>
    samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

  const status = await machines.machineStatus(ctx, M);
  assert.equal(one('osr_machine_state', { machine: M, state: 'protected' })?.value, 1);
  assert.equal(one('osr_machine_state', { machine: M, state: 'paused' })?.value, 0);
  assert.equal(one('osr_machine_rpo_threshold_seconds', { machine: M })?.value, 7200);
  const rpo = one('osr_machine_rpo_seconds', { machine: M })?.value;
  assert.ok(rpo !== undefined && rpo >= 0 && rpo < 600, `RPO ${rpo}`);
  assert.equal(one('osr_machine_rpo_exceeded', { machine: M })?.value, 0);
  assert.ok((one('osr_machine_bytes_changed_total', { machine: M })?.value ?? 0) >= 2 * MiB);
  assert.equal(one('osr_machine_bytes_sent_total', { machine: M })?.value, status.stats.bytesSent);
  assert.ok((one('osr_machine_compression_ratio', { machine: M })?.value ?? 0) > 0);
  assert.equal(one('osr_machine_cycles_total', { machine: M })?.value, status.stats.cycles);
  assert.equal(one('osr_machine_failed_cycles_total', { machine: M })?.value, 0);
  assert.equal(one('osr_machine_sync_percent', { machine: M })?.value, 100);
  assert.equal(types.get('osr_machine_bytes_sent_total'), 'counter');
  assert.ok(one('osr_machine_last_point_timestamp_seconds', { machine: M, kind: 'crash' }));
  const points = await ctx.vault.points(M);
  assert.equal(one('osr_machine_recovery_points', { machine: M, kind: 'crash' })?.value, points.length);
  const cycle = one('osr_machine_last_cycle_seconds', { machine: M })?.value;
  assert.ok(cycle !== undefined && cycle > 0 && cycle < 120, `last cycle ${cycle} s`);

  for (const role of ['control', 'process-server', 'cloud-applier']) {
    assert.equal(one('osr_server_up', { role })?.value, 1, `${role} heartbeat fresh`);
    assert.ok((one('osr_server_resident_memory_bytes', { role })?.value ?? 0) > 10 * MiB);
    assert.equal(one('osr_sdk_metrics_up', { role })?.value, 1, `${role} SDK exporter answered`);
    assert.ok(
      samples.some((s) => s.name.startsWith('temporal_') && s.labels.osr_role === role),
      `Temporal SDK metrics of the ${role} worker, labelled`,
    );
  }
  assert.ok(one('osr_server_pipeline_max_bytes_in_flight', { role: 'process-server' }));
  assert.equal(one('osr_jobs_running', { kind: 'protect' })?.value, 1);
  for (const source of ['machines', 'servers', 'jobs', 'alerts'])
    assert.equal(one('osr_up', { source })?.value, 1, source);
});

test('process-server health: heartbeats in the vault, GET /v1/servers and `osr servers`', async () => {
  const list = await until('heartbeats of the three roles', async () => {
    const s = await servers();
    return ['control', 'process-server', 'cloud-applier'].every((r) =>
      s.some((x) => x.role === r && !x.stale),
    )
      ? s
      : undefined;
  });
  const ps = list.find((s) => s.role === 'process-server') as ServerView;
  assert.equal(ps.pid > 0, true);
  assert.ok(ps.pipeline, 'the process server reports its block pipeline');
  assert.equal(ps.pipeline.maxBytesInFlight, stack.config.pipeline.maxBytesInFlight);
  assert.ok(ps.rssBytes > 0 && ps.heapUsedBytes > 0 && ps.cpuPercent >= 0);
  assert.ok(ps.sdkMetricsUrl?.startsWith('http://127.0.0.1:'));
  assert.deepEqual(
    ps.alerts.map((a) => a.kind),
    ['memory-pressure'],
    'RSS above health.rssAlertBytes raises memory pressure',
  );
  const control = list.find((s) => s.role === 'control') as ServerView;
  assert.ok(control.notifier?.webhook?.endsWith('/hooks/osr'), 'the control worker runs the notifier');

  const { stdout } = await run(process.execPath, [cliMain, 'servers', '--json'], { env: stack.env });
  const fromCli = JSON.parse(stdout) as ServerView[];
  assert.deepEqual(fromCli.map((s) => s.id).sort(), list.map((s) => s.id).sort());
  const table = (await run(process.execPath, [cliMain, 'servers'], { env: stack.env })).stdout;
  assert.match(table, /^ROLE\s+HOST\s+PID\s+HEALTH/m);
  assert.match(table, /process-server .* memory-pressure/);
});

test('alerts: listed by the API, POSTed to the webhook once (retried), not resent after a control restart', async () => {
  const res = await get('/v1/alerts');
  assert.equal(res.status, 200);
  const { alerts, problems } = (await res.json()) as { alerts: OsrAlert[]; problems: string[] };
  assert.deepEqual(problems, [], 'every source was read');
  const memory = alerts.find((a) => a.kind === 'memory-pressure');
  assert.ok(memory, JSON.stringify(alerts));
  assert.equal(memory.source, 'server');
  assert.match(memory.id, /^server:process-server-.+:memory-pressure-\d+$/);
  const fromCli = JSON.parse(
    (await run(process.execPath, [cliMain, 'alerts', '--json'], { env: stack.env })).stdout,
  ) as { alerts: OsrAlert[] };
  assert.ok(fromCli.alerts.some((a) => a.id === memory.id));
  assert.match(
    (await run(process.execPath, [cliMain, 'alerts'], { env: stack.env })).stdout,
    /^AT\s+SEVERITY\s+KIND\s+ABOUT\s+MESSAGE\n(.*\n)*.*warning\s+memory-pressure\s+process-server-/,
  );

  // First attempt answered 500, the retry 200; the body is signed with the shared secret.
  const delivered = await until('the memory alert delivered', async () =>
    deliveries.find((d) => d.payload.alert.id === memory.id && d.answered === 200),
  );
  const attempts = deliveries.filter((d) => d.payload.alert.id === memory.id);
  assert.equal(attempts[0]?.answered, 500);
  assert.equal(delivered.payload.attempt, 2);
  assert.equal(delivered.payload.type, 'osr.alert');
  assert.equal(
    delivered.signature,
    `sha256=${createHmac('sha256', webhookSecret).update(delivered.body).digest('hex')}`,
  );

  // Restart the control worker (kill -9): the new notifier reads the sent ids from the vault.
  const before = (await servers()).find((s) => s.role === 'control') as ServerView;
  await stack.killWorker('control');
  await stack.startWorker('control');
  // The old control worker's heartbeat goes stale: a new alert, sent by the new notifier.
  const stale = await until(
    'the stale-control alert delivered',
    async () =>
      deliveries.find((d) => d.payload.alert.id === `server:${before.id}:stale` && d.answered === 200),
    90_000,
  );
  assert.equal(stale.payload.alert.severity, 'critical');
  // Several passes of the new notifier later, the memory alert was still sent exactly once.
  await until('three passes of the new notifier', async () => {
    const c = (await servers()).find((s) => s.role === 'control' && s.pid !== before.pid && !s.stale);
    return (c?.notifier?.passes ?? 0) >= 3 ? c : undefined;
  });
  assert.equal(deliveries.filter((d) => d.payload.alert.id === memory.id && d.answered === 200).length, 1);
  assert.equal(
    deliveries.filter((d) => d.payload.alert.id === stale.payload.alert.id && d.answered === 200).length,
    1,
  );
});

test('a drill whose boot check fails raises an alert, sent to the webhook; it goes with the drill', async () => {
  await failover.configureRecovery(ctx, M, {
    bootCheck: { command: 'sleep 60', probe: 'exit 1', probeTimeoutSeconds: 2, commandTimeoutSeconds: 10 },
  });
  const { ref, status } = await failover.startTestFailover(ctx, M);
  assert.equal(status?.state, 'ready', "a failed boot check is the drill's finding, not its failure");
  assert.equal(status?.bootCheck?.ok, false);
  const id = `drill-boot:${M}:${ref.job}`;
  const listed = ((await (await get('/v1/alerts')).json()) as { alerts: OsrAlert[] }).alerts.find(
    (a) => a.id === id,
  );
  assert.equal(listed?.kind, 'drill-boot-check-failed');
  assert.equal(listed?.machine, M);
  await until('the boot-check alert delivered', async () =>
    deliveries.find((d) => d.payload.alert.id === id && d.answered === 200),
  );
  await failover.cleanupTestFailover(ctx, M);
  await failover.configureRecovery(ctx, M, { bootCheck: null });
  const after = ((await (await get('/v1/alerts')).json()) as { alerts: OsrAlert[] }).alerts;
  assert.ok(!after.some((a) => a.id === id), 'cleaned up with its drill');
});

test('audit log: API and CLI actions with who, what, outcome; GET /v1/audit and `osr audit`', async () => {
  const cut = await fetch(`${api.url}/v1/machines/${M}/points`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'x-osr-operator': 'alice',
    },
    body: JSON.stringify({ kind: 'crash', tag: 'audit' }),
  });
  assert.equal(cut.status, 201);
  const refused = await fetch(`${api.url}/v1/machines/${M}/failover/commit`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(refused.status, 404);
  await run(process.execPath, [cliMain, 'pause', M], { env: stack.env });
  await run(process.execPath, [cliMain, 'resume', M], { env: stack.env });

  const res = await get(`/v1/audit?target=${M}&limit=20`);
  assert.equal(res.status, 200);
  const { entries } = (await res.json()) as { entries: AuditEntry[] };
  const actions = entries.map((e) => e.action);
  // Newest first.
  assert.deepEqual(actions.slice(0, 4), [
    'machine.resume',
    'machine.pause',
    'failover.commit',
    'machine.point',
  ]);
  const [resume, pause, commit, point] = entries as [AuditEntry, AuditEntry, AuditEntry, AuditEntry];
  assert.equal(point.actor.via, 'api');
  assert.equal(point.actor.user, 'token');
  assert.equal(point.actor.claimedOperator, 'alice');
  assert.equal(point.outcome, 'ok');
  assert.deepEqual(point.details, { kind: 'crash', tag: 'audit' });
  assert.equal(commit.outcome, 'refused');
  assert.equal(commit.code, 'not-found');
  assert.equal(pause.actor.via, 'cli');
  assert.equal(pause.actor.user, os.userInfo().username);
  assert.equal(resume.outcome, 'ok');
  assert.ok(Date.parse(resume.at) >= Date.parse(pause.endedAt));

  const filtered = (await (await get('/v1/audit?action=failover')).json()) as { entries: AuditEntry[] };
  assert.ok(filtered.entries.every((e) => e.action.startsWith('failover.')));
  assert.equal((await get('/v1/audit?since=yesterday')).status, 400);

  const json = JSON.parse(
    (await run(process.execPath, [cliMain, 'audit', '--target', M, '--json'], { env: stack.env })).stdout,
  ) as AuditEntry[];
  assert.deepEqual(
    json.slice(0, 4).map((e) => e.action),
    actions.slice(0, 4),
  );
  const table = (await run(process.execPath, [cliMain, 'audit', '--limit', '3'], { env: stack.env })).stdout;
  assert.match(table, /^AT\s+WHO\s+ACTION\s+TARGET\s+OUTCOME/m);
  assert.match(table, new RegExp(`machine\\.resume\\s+${M}\\s+ok`));
  // Append-only: every entry is its own document under audit/<date>/.
  const names = await ctx.vault.listNames(`audit/${new Date().toISOString().slice(0, 10)}/`);
  assert.ok(names.length >= 4);
});

test('dashboard in headless Chromium: machine with its RPO, a drill started with a confirmed click, the job until ready', async () => {
  const page = await fetch(`${api.url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
  assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);

  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    const tab = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors: string[] = [];
    tab.on('pageerror', (err) => errors.push(err.message));
    tab.on('console', (msg) => {
      if (msg.type() === 'error') errors.push(msg.text());
    });
    await tab.goto(`${api.url}/#token=${token}`);
    const row = tab.locator(`tr[data-machine="${M}"]`);
    await row.locator('td[data-rpo]').waitFor({ timeout: 30_000 });
    assert.equal(await tab.evaluate('location.hash'), '', 'the token leaves the address bar');
    assert.match(await row.innerText(), /protected/);
    assert.match(await row.locator('td[data-rpo]').innerText(), /\d+ (s|min) \/ 2 h/);
    // The RPO bar is the RPO's share of the threshold: seconds of 2 h are a sliver.
    const share = (await tab.evaluate(
      `(() => { const s = document.querySelector('tr[data-machine="${M}"] .bar > span'); return s.getBoundingClientRect().width / s.parentElement.getBoundingClientRect().width; })()`,
    )) as number;
    assert.ok(share > 0 && share < 0.1, `RPO bar ${share}`);
    await tab.locator(`figure[data-chart="${M}"] path.series`).waitFor();
    await tab.locator('tr[data-server]').first().waitFor();
    assert.match(await tab.locator('#alerts').innerText(), /memory-pressure/);
    await tab.screenshot({ path: path.join(shots, '1-overview.png'), fullPage: true });

    await row.locator('button[data-action="drill"]').click();
    const dialog = tab.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    assert.match(await dialog.innerText(), new RegExp(`Drill of ${M}`));
    await tab.screenshot({ path: path.join(shots, '2-confirm.png') });
    await tab.locator('#confirm-ok').click();
    const job = tab.locator(`li[data-job^="drill/${M}/"]`);
    await job.waitFor({ timeout: 30_000 });
    await tab.locator(`li[data-job^="drill/${M}/"][data-state="ready"]`).waitFor({ timeout: 120_000 });
    const workflowId = (await job.getAttribute('data-job')) as string;
    await tab.screenshot({ path: path.join(shots, '3-drill-ready.png'), fullPage: true });
    assert.deepEqual(errors, [], 'no script error on the page');

    // The drill is real: its record is in the vault, and the audit log names the dashboard's caller.
    const drills = (await ctx.vault.list<{ job: string; kind: string }>(`recovered/${M}/`)).filter(
      (r) => r.kind === 'drill',
    );
    assert.ok(drills.some((d) => workflowId.endsWith(d.job)));
    const audit = (await (await get('/v1/audit?action=drill.start')).json()) as { entries: AuditEntry[] };
    assert.equal(audit.entries[0]?.actor.via, 'api');

    // Without the fragment, the page asks for the token once.
    const fresh = await browser.newPage();
    await fresh.goto(`${api.url}/`);
    await fresh.locator('dialog#login').waitFor({ state: 'visible' });
    await fresh.locator('#login-token').fill(token);
    await fresh.locator('#login-name').fill('bob');
    await fresh.locator('#login-form button[type="submit"]').click();
    await fresh.locator(`tr[data-machine="${M}"] td[data-rpo]`).waitFor({ timeout: 30_000 });
  } finally {
    await browser?.close();
  }
  await failover.cleanupTestFailover(ctx, M);
});

async function openDashboard(browser: Browser) {
  const tab = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  tab.on('pageerror', (err) => errors.push(err.message));
  // Console errors include what the Content-Security-Policy refuses.
  tab.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  await tab.goto(`${api.url}/#token=${token}`);
  await tab.locator(`tr[data-machine="${M}"]`).waitFor({ timeout: 30_000 });
  return { tab, errors };
}

test('dashboard: a plan drill waits for a manual action, approved with a confirmed click', async () => {
  await plans.createPlan(ctx, {
    name: 'shop',
    groups: [{ machines: [M], pre: [{ kind: 'manual', instruction: 'Check the database replica' }] }],
  });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const { tab, errors } = await openDashboard(browser);
    const card = tab.locator('article[data-plan="shop"]');
    await card.waitFor({ timeout: 30_000 });
    await card.locator('button[data-action="plan-drill"]').click();
    await tab.locator('dialog#confirm').waitFor({ state: 'visible' });
    await tab.locator('#confirm-ok').click();
    const approveButton = card.locator('.waiting button[data-action="approve"]');
    await approveButton.waitFor({ timeout: 60_000 });
    assert.match(await card.locator('.waiting').innerText(), /g1-pre-1: Check the database replica/);
    await tab.screenshot({ path: path.join(shots, '4-plan-waiting.png'), fullPage: true });
    await approveButton.click();
    await tab.locator('dialog#confirm').waitFor({ state: 'visible' });
    await tab.locator('#confirm-ok').click();
    await card.locator('.badge', { hasText: 'test-failover: ready' }).waitFor({ timeout: 120_000 });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
  const [job] = await plans.listPlanJobs(ctx, 'shop');
  assert.ok(job);
  const status = await plans.planStatus(ctx, job.job);
  assert.equal(status.state, 'ready');
  assert.equal(status.groups[0]?.actions[0]?.approvedBy, 'dashboard');
  await plans.startPlan(ctx, 'shop', 'cleanup');
});

test('dashboard: failover of the machine, then commit, each confirmed', async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const { tab, errors } = await openDashboard(browser);
    const row = tab.locator(`tr[data-machine="${M}"]`);
    await row.locator('button[data-action="failover"]').click();
    const dialog = tab.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    assert.match(await dialog.innerText(), /This is not a drill/);
    // Cancel does nothing.
    await tab.locator('#confirm-cancel').click();
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(
      (await ctx.vault.list(`recovered/${M}/`)).filter((r) => (r as { kind: string }).kind === 'failover')
        .length,
      0,
    );

    await row.locator('button[data-action="failover"]').click();
    await dialog.waitFor({ state: 'visible' });
    await tab.locator('#confirm-ok').click();
    const job = tab.locator(`li[data-job^="failover/${M}/"][data-state="failed-over"]`);
    await job.waitFor({ timeout: 120_000 });
    await tab.screenshot({ path: path.join(shots, '5-failed-over.png'), fullPage: true });
    await job.locator('button[data-action="commit"]').click();
    await dialog.waitFor({ state: 'visible' });
    assert.match(await dialog.innerText(), /cannot be undone/);
    await tab.locator('#confirm-ok').click();
    await tab.locator(`li[data-job^="failover/${M}/"][data-state="committed"]`).waitFor({ timeout: 120_000 });
    await tab.screenshot({ path: path.join(shots, '6-committed.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
  const audit = (await (await get('/v1/audit?action=failover&limit=5')).json()) as { entries: AuditEntry[] };
  assert.deepEqual(
    audit.entries.slice(0, 2).map((e) => [e.action, e.outcome]),
    [
      ['failover.commit', 'ok'],
      ['failover.start', 'ok'],
    ],
  );
});
