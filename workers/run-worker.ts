// Shared start-up of every OSR worker process: configuration, one Temporal connection, one
// worker on the role's task queue, clean shutdown on SIGTERM/SIGINT (the SDK drains in-flight
// tasks), and the process's resources closed after the worker stops.
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel } from '@temporalio/worker';
import { insecureChannels } from '../lib/config/channel-security';
import { loadConfig, type OsrConfig } from '../lib/config/config';
import { createLogger, type Logger } from '../lib/config/logger';
import { storageCredentialProblem } from '../lib/azure/blob-client';
import { redactStorageSecrets } from '../lib/azure/storage-secrets';
import type { StorageRole } from '../lib/config/storage-roles';
import { temporalConnectionOptions } from '../operations/temporal-connection';
import { HEARTBEAT_EVERY_MS } from '../activities/common/with-heartbeat';
import { ensureSearchAttributes } from './search-attributes';
import { workflowCodeOptions } from './workflow-bundle';
import { sdkMetricsExporter, startObservability } from './observability';

export interface WorkerSpec {
  role: StorageRole;
  /** Process servers started for hosts (`--host`): named in the heartbeat, so a host's lost servers show. */
  hosts?: string[];
  taskQueue: (config: OsrConfig) => string;
  /** More queues the same activities serve (one Worker each, sharing the connection and activities). */
  extraTaskQueues?: (config: OsrConfig) => string[];
  /**
   * Builds the role's activities; `close` releases what they hold (thread pools, sockets). `more`:
   * other activities this process serves on queues of their own (a process server's agent master target).
   */
  setup: (
    config: OsrConfig,
    log: Logger,
  ) => Promise<{
    activities: object;
    close?: () => Promise<void>;
    more?: Array<{ taskQueue: string; activities: object }>;
  }>;
  /** Only the control worker runs workflow code (see workflow-bundle.ts). */
  runsWorkflows?: boolean;
  maxConcurrentActivityTaskExecutions?: number;
  /** Runs the alert notifier (webhook) in this process: the control worker. */
  alertNotifier?: boolean;
}

const sdkLevels: Record<string, LogLevel> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
};

export async function runWorker(spec: WorkerSpec): Promise<void> {
  const config = loadConfig();
  const log = createLogger(spec.role, config.log.level);
  if (spec.hosts?.length) log.info({ hosts: spec.hosts }, `${spec.role} worker serves hosts`);
  for (const finding of insecureChannels(config)) log.warn({ insecureChannel: true }, finding);
  const sdkMetrics = await sdkMetricsExporter(config);
  Runtime.install({
    telemetryOptions: sdkMetrics.telemetryOptions,
    logger: new DefaultLogger(sdkLevels[config.log.level] ?? 'WARN', (entry) => {
      const method =
        entry.level === 'TRACE'
          ? 'trace'
          : (entry.level.toLowerCase() as 'debug' | 'info' | 'warn' | 'error');
      log[method]({ ...entry.meta, sdk: true }, entry.message);
    }),
  });
  const connection = await NativeConnection.connect(temporalConnectionOptions(config));
  // The worker that runs workflows makes sure the search attributes they set exist.
  if (spec.runsWorkflows) await ensureSearchAttributes(connection, config.temporal.namespace, log);
  const { activities, close, more = [] } = await spec.setup(config, log);
  const taskQueue = spec.taskQueue(config);
  const extra = (spec.extraTaskQueues?.(config) ?? []).filter((q) => q !== taskQueue);
  const served = [...extra.map((queue) => ({ taskQueue: queue, activities })), ...more];
  const workflowCode = spec.runsWorkflows ? workflowCodeOptions() : undefined;
  if (workflowCode && !workflowCode.prebuilt) {
    log.info('no workflow bundle built from this code (`npm run build` makes one): bundling at start');
  }
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue,
    activities,
    ...workflowCode?.options,
    maxConcurrentActivityTaskExecutions: spec.maxConcurrentActivityTaskExecutions,
    // Heartbeats reach Temporal every few seconds (the SDK's default waits up to 0.8 × the
    // heartbeat timeout): a short timeout then finds a dead worker fast and never a live one.
    maxHeartbeatThrottleInterval: HEARTBEAT_EVERY_MS,
  });
  const others = await Promise.all(
    served.map((also) =>
      Worker.create({
        connection,
        namespace: config.temporal.namespace,
        taskQueue: also.taskQueue,
        activities: also.activities,
        maxConcurrentActivityTaskExecutions: spec.maxConcurrentActivityTaskExecutions,
        maxHeartbeatThrottleInterval: HEARTBEAT_EVERY_MS,
      }),
    ),
  );
  if (served.length)
    log.info({ taskQueues: served.map((q) => q.taskQueue) }, `${spec.role} worker also serves`);
  // Heartbeat document (osr servers), and the alert notifier in the control worker.
  const observability = startObservability({
    config,
    log,
    role: spec.role,
    taskQueue,
    hosts: spec.hosts,
    alertNotifier: spec.alertNotifier,
    sdkMetricsUrl: sdkMetrics.url,
  });
  observability.attachWorker(worker);
  log.info({ taskQueue, namespace: config.temporal.namespace }, `${spec.role} worker polling`);
  try {
    await Promise.all([worker.run(), ...others.map((w) => w.run())]);
  } finally {
    await observability.stop();
    await close?.();
    await connection.close();
    log.info(`${spec.role} worker stopped`);
  }
}

export function main(spec: WorkerSpec): void {
  runWorker(spec).catch((err: unknown) => {
    const message = storageCredentialProblem(err) ?? (err instanceof Error ? err.message : String(err));
    // A secret of storage sign-in never reaches a log, whatever error carried it.
    process.stderr.write(`${spec.role} worker failed: ${redactStorageSecrets(message)}\n`);
    process.exit(1);
  });
}
