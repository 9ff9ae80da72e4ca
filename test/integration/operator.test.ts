// What an operator sees of OSR, against the real stack: Prometheus metrics (OSR's and every
// worker's Temporal SDK metrics), process-server heartbeats, current alerts and the webhook
// (retried, sent once, not resent after a restart of the control worker) and the audit log from the
// API and the CLI. The dashboard in headless Chromium: operator-dashboard.test.ts.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import os from 'node:os';
import { test } from 'node:test';
import type { ServerView } from '../../lib/observability/server-health';
import type { OsrAlert } from '../../operations/alerts';
import type { AuditEntry } from '../../operations/audit';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import {
  run,
  MiB,
  M,
  token,
  webhookSecret,
  cliMain,
  stack,
  ctx,
  api,
  deliveries,
  get,
  until,
  servers,
  parseExposition,
  useOperatorStack,
} from '../helpers/operator-fixture';

useOperatorStack();

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
  // The single token of earlier releases is the admin identity `legacy`.
  assert.equal(point.actor.user, 'legacy');
  assert.equal(point.actor.role, 'admin');
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
