// Shared start-up of every OSR worker process: configuration, one Temporal connection, one
// worker on the role's task queue, clean shutdown on SIGTERM/SIGINT (the SDK drains in-flight
// tasks), and the process's resources closed after the worker stops.
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel } from '@temporalio/worker';
import { loadConfig, type OsrConfig } from '../shared/config';
import { createLogger, type Logger } from '../shared/logger';
import { temporalConnectionOptions } from '../shared/temporal-connection';

export interface WorkerSpec {
  role: string;
  taskQueue: (config: OsrConfig) => string;
  /** Builds the role's activities; `close` releases what they hold (thread pools, sockets). */
  setup: (config: OsrConfig, log: Logger) => Promise<{ activities: object; close?: () => Promise<void> }>;
  /** Only the control worker runs workflow code. */
  workflowsPath?: string;
  maxConcurrentActivityTaskExecutions?: number;
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
  Runtime.install({
    logger: new DefaultLogger(sdkLevels[config.log.level] ?? 'WARN', (entry) => {
      const method =
        entry.level === 'TRACE'
          ? 'trace'
          : (entry.level.toLowerCase() as 'debug' | 'info' | 'warn' | 'error');
      log[method]({ ...entry.meta, sdk: true }, entry.message);
    }),
  });
  const connection = await NativeConnection.connect(temporalConnectionOptions(config));
  const { activities, close } = await spec.setup(config, log);
  const taskQueue = spec.taskQueue(config);
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue,
    activities,
    workflowsPath: spec.workflowsPath,
    maxConcurrentActivityTaskExecutions: spec.maxConcurrentActivityTaskExecutions,
  });
  log.info({ taskQueue, namespace: config.temporal.namespace }, `${spec.role} worker polling`);
  try {
    await worker.run();
  } finally {
    await close?.();
    await connection.close();
    log.info(`${spec.role} worker stopped`);
  }
}

export function main(spec: WorkerSpec): void {
  runWorker(spec).catch((err: unknown) => {
    process.stderr.write(`${spec.role} worker failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
