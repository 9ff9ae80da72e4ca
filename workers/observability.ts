// What every worker process adds for operators: the Temporal SDK's Prometheus exporter (on
// metrics.sdkBindAddress, or a free loopback port), the heartbeat document (workers/heartbeat.ts)
// that names where those metrics are, and in the control worker the alert notifier.
import os from 'node:os';
import type { RuntimeOptions, Worker } from '@temporalio/worker';
import type { OsrConfig } from '../lib/config/config';
import type { Logger } from '../lib/config/logger';
import { freePort } from '../lib/process/ports';
import { openRoleStorage } from '../lib/azure/role-storage';
import type { StorageRole } from '../lib/config/storage-roles';
import { Vault } from '../lib/azure/vault';
import { startAlertNotifier, type AlertNotifier } from './alert-notifier';
import { startHeartbeat, type Heartbeat } from './heartbeat';

const STOP_TIMEOUT_MS = 5000;

export interface SdkMetrics {
  telemetryOptions?: RuntimeOptions['telemetryOptions'];
  /** http://host:port/metrics, when the exporter is on. */
  url?: string;
}

export async function sdkMetricsExporter(config: OsrConfig): Promise<SdkMetrics> {
  if (!config.metrics.sdkExporter) return {};
  const bindAddress = config.metrics.sdkBindAddress ?? `127.0.0.1:${await freePort()}`;
  const [host, port] = [bindAddress.slice(0, bindAddress.lastIndexOf(':')), bindAddress.split(':').pop()];
  const shown = host === '0.0.0.0' || host === '::' ? os.hostname() : host;
  return {
    telemetryOptions: { metrics: { prometheus: { bindAddress, useSecondsForDurations: true } } },
    url: `http://${shown}:${port}/metrics`,
  };
}

export interface Observability {
  attachWorker(worker: Worker): void;
  stop(): Promise<void>;
}

export function startObservability(options: {
  config: OsrConfig;
  log: Logger;
  role: StorageRole;
  taskQueue: string;
  hosts?: string[];
  alertNotifier?: boolean;
  sdkMetricsUrl?: string;
}): Observability {
  const { config, log } = options;
  const vault = new Vault(openRoleStorage(config, options.role));
  const heartbeat: Heartbeat = startHeartbeat({
    config,
    vault,
    log,
    role: options.role,
    taskQueue: options.taskQueue,
    hosts: options.hosts,
    sdkMetricsUrl: options.sdkMetricsUrl,
  });
  let notifier: AlertNotifier | undefined;
  if (options.alertNotifier) {
    notifier = startAlertNotifier({ config, log });
    heartbeat.setNotifier(() => notifier!.health());
  }
  if (options.sdkMetricsUrl) log.info({ url: options.sdkMetricsUrl }, 'Temporal SDK metrics exporter');
  return {
    attachWorker: (worker) => heartbeat.attachWorker(worker),
    async stop() {
      // Bounded: storage that cannot be reached must not hold the worker's shutdown.
      const done = (async () => {
        await notifier?.stop();
        await heartbeat.stop();
      })();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          log.warn('heartbeat or notifier did not stop within 5 s; leaving them');
          resolve();
        }, STOP_TIMEOUT_MS);
      });
      await Promise.race([done.catch(() => undefined), timeout]);
      clearTimeout(timer);
    },
  };
}
