// GET /metrics: OSR's state in the Prometheus text format, built at scrape time from what the
// control plane already knows: each protected machine's status query (RPO, state, bytes, cycles,
// sync progress, alerts), the workers' heartbeat documents (CPU, memory, pipeline), running jobs,
// current alerts; and the Temporal SDK's own metrics of every live worker, fetched from the
// exporter its heartbeat names and relabelled with osr_role and osr_server.
import type { ControlContext } from '../operations/context';
import { listServers, type ServerView } from '../lib/observability/server-health';
import { rejectionCounts } from '../lib/observability/rejections';
import { listAlerts } from '../operations/alerts';
import { listMachines, type MachineOverview } from '../operations/machines';
import { MetricsRegistry } from '../lib/observability/prometheus';
import { HEALTH_RANK } from '../shared/machine-health';
import type { RecoveryPoint } from '../shared/replication-types';
import { Vault } from '../lib/azure/vault';
import { JOB_KINDS } from '../shared/job-kinds';
import { listRunningJobs } from './jobs';

const MACHINE_STATES = [
  'enabling',
  'initial-sync',
  'protected',
  'resyncing',
  'paused',
  'disabling',
  'disabled',
] as const;
const SDK_FETCH_TIMEOUT_MS = 2000;

export async function renderMetrics(ctx: ControlContext): Promise<string> {
  const started = Date.now();
  const r = new MetricsRegistry();
  const up = r.gauge('osr_up', 'Whether a source of these metrics could be read (1) or not (0)');

  // Machines.
  const statusUp = r.gauge(
    'osr_machine_status_up',
    "The machine's protectMachine workflow answered its status query",
  );
  const state = r.gauge('osr_machine_state', "The machine's replication state (1 for the current state)");
  const rpo = r.gauge('osr_machine_rpo_seconds', 'Seconds since the instant of the newest recovery point');
  const threshold = r.gauge('osr_machine_rpo_threshold_seconds', "The policy's RPO threshold");
  const exceeded = r.gauge('osr_machine_rpo_exceeded', 'RPO over the threshold (1) or not (0)');
  const lastPoint = r.gauge(
    'osr_machine_last_point_timestamp_seconds',
    'Instant of the newest recovery point, by kind (crash, app)',
  );
  const changed = r.counter(
    'osr_machine_bytes_changed_total',
    'Bytes read from the source (changed blocks) since protection started',
  );
  const sent = r.counter(
    'osr_machine_bytes_sent_total',
    'Bytes sent to storage (compressed, encrypted segments) since protection started',
  );
  const ratio = r.gauge('osr_machine_compression_ratio', 'Bytes changed / bytes sent (higher is better)');
  const cycles = r.counter('osr_machine_cycles_total', 'Replication cycles completed');
  const failed = r.counter('osr_machine_failed_cycles_total', 'Replication cycles that failed');
  const syncPct = r.gauge('osr_machine_sync_percent', 'Progress of the running transfer (100 when idle)');
  const backlog = r.gauge('osr_machine_backlog_bytes', 'Bytes of the running transfer not yet sent');
  const alerts = r.gauge('osr_machine_alerts', 'Current alerts of the machine, by severity');
  const disks = r.gauge('osr_machine_disks', 'Protected disks, by whether the replica holds a full image');
  const cycleSeconds = r.gauge(
    'osr_machine_last_cycle_seconds',
    "From the newest point's instant (freeze) to its publication: the duration of the last complete cycle",
  );
  const pointCount = r.gauge('osr_machine_recovery_points', 'Recovery points kept, by kind');
  const health = r.gauge(
    'osr_machine_health',
    "The machine's health (shared/machine-health.ts): 0 healthy, 1 warning, 2 critical",
  );
  let overviews: MachineOverview[] | undefined;
  try {
    overviews = await listMachines(ctx);
    for (const m of overviews) {
      const labels = { machine: m.machine };
      const s = m.status;
      statusUp(labels, s ? 1 : 0);
      const level = (s?.health ?? m.health)?.level;
      if (level) health(labels, HEALTH_RANK[level]);
      if (!s) continue;
      for (const st of MACHINE_STATES) state({ ...labels, state: st }, s.state === st ? 1 : 0);
      rpo(labels, s.rpoSeconds);
      threshold(labels, s.policy.rpoThresholdSeconds);
      exceeded(
        labels,
        s.rpoSeconds === undefined ? undefined : s.rpoSeconds > s.policy.rpoThresholdSeconds ? 1 : 0,
      );
      if (s.lastPoint) lastPoint({ ...labels, kind: 'crash' }, Date.parse(s.lastPoint.instant) / 1000);
      if (s.lastAppPoint) lastPoint({ ...labels, kind: 'app' }, Date.parse(s.lastAppPoint.instant) / 1000);
      changed(labels, s.stats.bytesChanged);
      sent(labels, s.stats.bytesSent);
      ratio(labels, s.stats.bytesSent > 0 ? round(s.stats.bytesChanged / s.stats.bytesSent) : 1);
      cycles(labels, s.stats.cycles);
      failed(labels, s.stats.failedCycles);
      const total = (s.progress ?? []).reduce((a, p) => a + p.bytesTotal, 0);
      const done = (s.progress ?? []).reduce((a, p) => a + p.bytesDone, 0);
      syncPct(labels, total > 0 ? round((100 * done) / total) : 100);
      backlog(labels, total - done);
      for (const severity of ['warning', 'critical'])
        alerts({ ...labels, severity }, s.alerts.filter((a) => a.severity === severity).length);
      disks({ ...labels, synced: 'true' }, s.disks.filter((d) => d.synced).length);
      disks({ ...labels, synced: 'false' }, s.disks.filter((d) => !d.synced).length);
    }
    // From the catalog: one listing and one document per machine.
    await Promise.all(
      overviews.map(async (m) => {
        const labels = { machine: m.machine };
        const summaries = await ctx.vault.pointSummaries(m.machine);
        for (const kind of ['crash', 'app'])
          pointCount({ ...labels, kind }, summaries.filter((p) => p.kind === kind).length);
        const last = m.status?.lastPoint;
        if (!last) return;
        const point = (await ctx.vault.read<RecoveryPoint>(Vault.pointDoc(m.machine, last.id)))?.value;
        if (point?.createdAt)
          cycleSeconds(labels, (Date.parse(point.createdAt) - Date.parse(point.instant)) / 1000);
      }),
    );
    up({ source: 'machines' }, 1);
  } catch {
    up({ source: 'machines' }, 0);
  }

  // Servers (heartbeats).
  let servers: ServerView[] = [];
  try {
    servers = await listServers(ctx.vault, ctx.config);
    up({ source: 'servers' }, 1);
  } catch {
    up({ source: 'servers' }, 0);
  }
  const serverUp = r.gauge('osr_server_up', "The worker's heartbeat is fresh (1) or stale (0)");
  const age = r.gauge('osr_server_heartbeat_age_seconds', "Seconds since the worker's last heartbeat");
  const cpu = r.gauge('osr_server_cpu_percent', 'CPU of the worker process, percent of one core');
  const rss = r.gauge('osr_server_resident_memory_bytes', 'Resident memory of the worker process');
  const heap = r.gauge('osr_server_heap_used_bytes', 'V8 heap in use');
  const lag = r.gauge(
    'osr_server_event_loop_lag_seconds',
    'Event-loop delay over the last heartbeat interval',
  );
  const acts = r.gauge('osr_server_activities_in_flight', 'Activities the worker is running');
  const inFlight = r.gauge('osr_server_pipeline_bytes_in_flight', 'Raw bytes in the block pipeline');
  const maxInFlight = r.gauge(
    'osr_server_pipeline_max_bytes_in_flight',
    "The pipeline's bound (pipeline.maxBytesInFlight)",
  );
  const waiting = r.gauge('osr_server_pipeline_waiting', 'Calls waiting for room in the pipeline (backlog)');
  const raw = r.counter(
    'osr_server_pipeline_raw_bytes_total',
    'Raw bytes encoded or decoded by the pipeline',
  );
  const out = r.counter('osr_server_pipeline_segment_bytes_total', 'Segment bytes produced by the pipeline');
  const thr = r.gauge(
    'osr_server_pipeline_throughput_bytes_per_second',
    'Raw bytes per second over the last heartbeat interval',
  );
  const serverAlerts = r.gauge(
    'osr_server_alerts',
    'Current alerts the worker raises about itself (memory, backlog)',
  );
  const rejected = r.counter(
    'osr_input_rejections_total',
    'Input a network-facing parser refused with its typed error (segment, nbd, qmp, http-body), by kind',
  );
  for (const x of rejectionCounts())
    rejected({ server: 'api', role: 'api', parser: x.parser, kind: x.kind }, x.count);
  for (const s of servers) {
    const labels = { server: s.id, role: s.role, host: s.host, site: s.site };
    for (const x of s.rejections ?? []) rejected({ ...labels, parser: x.parser, kind: x.kind }, x.count);
    serverUp(labels, s.stale ? 0 : 1);
    age(labels, s.ageSeconds);
    cpu(labels, s.cpuPercent);
    rss(labels, s.rssBytes);
    heap(labels, s.heapUsedBytes);
    lag({ ...labels, quantile: '0.99' }, s.eventLoopLagMs.p99 / 1000);
    lag({ ...labels, quantile: 'max' }, s.eventLoopLagMs.max / 1000);
    acts(labels, s.activitiesInFlight);
    serverAlerts(labels, s.alerts.length);
    if (s.pipeline) {
      inFlight(labels, s.pipeline.bytesInFlight);
      maxInFlight(labels, s.pipeline.maxBytesInFlight);
      waiting(labels, s.pipeline.waiting);
      raw(labels, s.pipeline.rawBytesIn);
      out(labels, s.pipeline.segmentBytesOut);
      thr(labels, s.pipeline.throughputBytesPerSecond);
    }
  }

  // Jobs and alerts.
  const jobs = r.gauge('osr_jobs_running', 'Running OSR workflows, by kind');
  try {
    const running = await listRunningJobs(ctx);
    for (const kind of JOB_KINDS) jobs({ kind }, running.filter((j) => j.kind === kind).length);
    up({ source: 'jobs' }, 1);
  } catch {
    up({ source: 'jobs' }, 0);
  }
  const active = r.gauge('osr_alerts_active', 'Current alerts (GET /v1/alerts), by source and severity');
  try {
    const list = await listAlerts(ctx, overviews);
    for (const source of ['machine', 'group', 'job', 'server'])
      for (const severity of ['warning', 'critical'])
        active(
          { source, severity },
          list.alerts.filter((a) => a.source === source && a.severity === severity).length,
        );
    up({ source: 'alerts' }, list.problems.length ? 0 : 1);
  } catch {
    up({ source: 'alerts' }, 0);
  }

  // The Temporal SDK's metrics of every live worker.
  const sdkUp = r.gauge('osr_sdk_metrics_up', "The worker's Temporal SDK exporter answered (1) or not (0)");
  await Promise.all(
    servers
      .filter((s) => !s.stale && s.sdkMetricsUrl)
      .map(async (s) => {
        const labels = { server: s.id, role: s.role };
        try {
          const res = await fetch(s.sdkMetricsUrl as string, {
            signal: AbortSignal.timeout(SDK_FETCH_TIMEOUT_MS),
          });
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          const text = await res.text();
          r.merge(text, { osr_role: s.role, osr_server: s.id });
          sdkUp(labels, 1);
        } catch {
          sdkUp(labels, 0);
        }
      }),
  );
  r.gauge('osr_metrics_scrape_duration_seconds', 'Time taken to build this page')(
    {},
    (Date.now() - started) / 1000,
  );
  return r.toString();
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
