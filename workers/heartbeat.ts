// A worker's heartbeat: every health.heartbeatSeconds it writes servers/<role>-<host>-<pid>.json
// to the vault with its CPU, memory, event-loop lag, in-flight work, block-pipeline backlog and
// throughput (process server and applier), and the alerts it raises about itself (memory or
// backlog pressure; a process server's state disk nearly full, lib/observability/state-disk.ts). `osr servers`, GET /v1/servers, /metrics and the alert notifier read them.
// A clean stop removes the document; a crashed worker's document goes stale.
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import type { Worker } from '@temporalio/worker';
import { BlockPipeline } from '../lib/segments/block-pipeline';
import { rejectionCounts } from '../lib/observability/rejections';
import { StateDiskWatch } from '../lib/observability/state-disk';
import { statePaths } from '../lib/config/state-paths';
import type { OsrConfig } from '../lib/config/config';
import {
  listServers,
  serverDoc,
  serverId,
  type NotifierHealth,
  type PipelineHealth,
  type ServerAlert,
  type ServerHeartbeat,
} from '../lib/observability/server-health';
import type { Logger } from '../lib/config/logger';
import type { Vault } from '../lib/azure/vault';

export interface HeartbeatOptions {
  config: OsrConfig;
  vault: Vault;
  log: Logger;
  role: string;
  taskQueue: string;
  /** The hosts a process server was started for. */
  hosts?: string[];
  sdkMetricsUrl?: string;
}

export interface Heartbeat {
  readonly id: string;
  attachWorker(worker: Worker): void;
  /** The control worker's alert notifier reports its state here. */
  setNotifier(source: () => NotifierHealth): void;
  /** One heartbeat now (also what the timer runs). */
  beat(): Promise<ServerHeartbeat>;
  stop(): Promise<void>;
}

const MiB = 1024 * 1024;
/** The control worker forgets heartbeats of workers silent this long (a stale alert until then). */
export const FORGET_SERVER_AFTER_MS = 24 * 3600_000;

export function startHeartbeat(options: HeartbeatOptions): Heartbeat {
  const { config, vault, log, role } = options;
  const host = os.hostname();
  const id = serverId(role, host, process.pid);
  const startedAt = new Date().toISOString();
  const LAG_RESOLUTION_MS = 20;
  const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  lag.enable();
  let worker: Worker | undefined;
  let notifier: (() => NotifierHealth) | undefined;
  let lastCpu = process.cpuUsage();
  let lastAt = Date.now();
  let lastRawBytes = BlockPipeline.current?.stats().rawBytesIn ?? 0;
  const who = `${role} worker on ${host} (pid ${process.pid})`;
  const pressure = new PressureTracker(config.health, who);
  const stateDisk =
    role === 'process-server'
      ? new StateDiskWatch(statePaths(config).machines, config.health.stateDiskFreeAlertRatio, who)
      : undefined;
  let stopped = false;
  let writing: Promise<unknown> = Promise.resolve();

  const measure = (): ServerHeartbeat => {
    const now = Date.now();
    const cpu = process.cpuUsage(lastCpu);
    const elapsedMs = Math.max(1, now - lastAt);
    const cpuPercent = Math.round(((cpu.user + cpu.system) / 1000 / elapsedMs) * 1000) / 10;
    const mem = process.memoryUsage();
    const heapLimitBytes = v8.getHeapStatistics().heap_size_limit;
    // The histogram records whole sampling intervals: the delay is what exceeds the resolution.
    const delay = (ns: number) => round(Math.max(0, ns / 1e6 - LAG_RESOLUTION_MS));
    const eventLoopLagMs = { mean: delay(lag.mean), p99: delay(lag.percentile(99)), max: delay(lag.max) };
    lag.reset();
    let pipeline: PipelineHealth | undefined;
    const bp = BlockPipeline.current;
    if (bp) {
      const s = bp.stats();
      pipeline = {
        threads: s.threads,
        bytesInFlight: s.bytesInFlight,
        maxBytesInFlight: bp.maxBytesInFlight,
        waiting: s.waiting,
        rawBytesIn: s.rawBytesIn,
        segmentBytesOut: s.segmentBytesOut,
        compressionRatio: round(s.compressionRatio),
        throughputBytesPerSecond: Math.round(((s.rawBytesIn - lastRawBytes) * 1000) / elapsedMs),
      };
      lastRawBytes = s.rawBytesIn;
    }
    lastCpu = process.cpuUsage();
    lastAt = now;

    const alerts = pressure.update({
      now,
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      heapLimitBytes,
      pipeline,
    });
    if (stateDisk) alerts.push(...stateDisk.update(now));

    const status = worker?.getStatus();
    return {
      id,
      role,
      site: config.site,
      host,
      pid: process.pid,
      taskQueue: options.taskQueue,
      ...(options.hosts?.length ? { hosts: options.hosts } : {}),
      startedAt,
      at: new Date(now).toISOString(),
      cpuPercent,
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      heapLimitBytes,
      eventLoopLagMs,
      activitiesInFlight: status?.numInFlightActivities,
      workflowActivationsInFlight: status?.numInFlightWorkflowActivations,
      pipeline,
      sdkMetricsUrl: options.sdkMetricsUrl,
      alerts,
      notifier: notifier?.(),
      rejections: rejectionCounts(),
      heartbeatSeconds: config.health.heartbeatSeconds,
    };
  };

  let beats = 0;
  const forgetDeadServers = async () => {
    // Aged by the storage service's clock: a worker whose own clock runs a day ahead forgets nobody.
    for (const doc of await listServers(vault, config))
      if (doc.ageSeconds * 1000 > FORGET_SERVER_AFTER_MS) {
        await vault.remove(serverDoc(doc.id));
        log.info({ server: doc.id, lastHeartbeat: doc.at }, 'forgot a worker silent for a day');
      }
  };

  const beat = async (): Promise<ServerHeartbeat> => {
    const hb = measure();
    if (role === 'control' && beats++ % 100 === 0)
      await forgetDeadServers().catch((err: unknown) =>
        log.warn({ err: (err as Error).message }, 'old heartbeats not removed'),
      );
    const write = writing.then(() => (stopped ? undefined : vault.write(serverDoc(id), hb, '*')));
    writing = write.catch(() => undefined);
    await write;
    return hb;
  };

  const timer = setInterval(() => {
    beat().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'heartbeat not written'));
  }, config.health.heartbeatSeconds * 1000);
  timer.unref();
  void beat().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'heartbeat not written'));

  return {
    id,
    attachWorker(w) {
      worker = w;
    },
    setNotifier(source) {
      notifier = source;
    },
    beat,
    async stop() {
      clearInterval(timer);
      await writing;
      stopped = true;
      lag.disable();
      await vault.remove(serverDoc(id)).catch(() => undefined);
    },
  };
}

/**
 * A worker's alerts about itself, from one sample per heartbeat: memory pressure (RSS over
 * health.rssAlertBytes or heap over 90 % of its limit) and backlog pressure (the block pipeline at
 * health.backlogAlertRatio of its bound, or with callers waiting, two heartbeats running). Each
 * episode keeps one id (`<kind>-<start ms>`) while it lasts; once it clears, the next is new.
 */
export class PressureTracker {
  readonly #since = new Map<ServerAlert['kind'], number>();
  #backlogBeats = 0;

  constructor(
    private readonly limits: { rssAlertBytes: number; backlogAlertRatio: number },
    private readonly who: string,
  ) {}

  update(sample: {
    now: number;
    rssBytes: number;
    heapUsedBytes: number;
    heapLimitBytes: number;
    pipeline?: Pick<PipelineHealth, 'bytesInFlight' | 'maxBytesInFlight' | 'waiting'>;
  }): ServerAlert[] {
    const alerts: ServerAlert[] = [];
    const { rssAlertBytes, backlogAlertRatio } = this.limits;
    this.#episode(
      alerts,
      sample.now,
      'memory-pressure',
      sample.rssBytes > rssAlertBytes || sample.heapUsedBytes > 0.9 * sample.heapLimitBytes,
      () =>
        `${this.who} uses ${mib(sample.rssBytes)} MiB RSS and ${mib(sample.heapUsedBytes)} MiB of a ${mib(sample.heapLimitBytes)} MiB heap (alert above ${mib(rssAlertBytes)} MiB RSS or 90% of the heap)`,
    );
    const p = sample.pipeline;
    const full =
      p !== undefined && (p.waiting > 0 || p.bytesInFlight >= backlogAlertRatio * p.maxBytesInFlight);
    this.#backlogBeats = full ? this.#backlogBeats + 1 : 0;
    this.#episode(
      alerts,
      sample.now,
      'backlog-pressure',
      this.#backlogBeats >= 2,
      () =>
        `${this.who}: the block pipeline is full (${mib(p?.bytesInFlight ?? 0)} of ${mib(p?.maxBytesInFlight ?? 0)} MiB in flight, ${p?.waiting ?? 0} waiting); replication is slowed by this server: add process servers or pipeline threads`,
    );
    return alerts;
  }

  #episode(
    alerts: ServerAlert[],
    now: number,
    kind: ServerAlert['kind'],
    active: boolean,
    message: () => string,
  ): void {
    if (!active) {
      this.#since.delete(kind);
      return;
    }
    const start = this.#since.get(kind) ?? now;
    this.#since.set(kind, start);
    alerts.push({
      id: `${kind}-${start}`,
      kind,
      severity: 'warning',
      at: new Date(start).toISOString(),
      message: message(),
    });
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / MiB);
}

function round(n: number): number {
  return Number.isFinite(n) ? Math.round(n * 100) / 100 : 0;
}
