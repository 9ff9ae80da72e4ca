// Starts Azurite's blob service on loopback: persistent under .osr/azurite for the stack, in
// memory for tests. Telemetry off: this machine must not call home.
import fs from 'node:fs';
import { readyOrStopped, spawnManaged, type RunningProcess } from '../lib/process/managed-process';
import { waitForPort } from '../lib/process/ports';

export interface AzuriteOptions {
  port: number;
  /** Folder for Azurite's data; omitted means in memory. */
  location?: string;
  logFile: string;
  detached?: boolean;
  pidFile?: string;
  /** HTTPS with this certificate and key (PEM files); with oauth 'basic', Entra ID tokens are accepted (HTTPS only). */
  tls?: { certPath: string; keyPath: string; oauth?: 'basic' };
  /** The address it listens on (default loopback; 0.0.0.0 to be reached from another namespace). */
  host?: string;
}

export function azuriteEntryPoint(): string {
  return require.resolve('azurite/dist/src/blob/main.js');
}

export async function startAzurite(options: AzuriteOptions): Promise<RunningProcess> {
  const args = [
    azuriteEntryPoint(),
    '--blobHost',
    options.host ?? '127.0.0.1',
    '--blobPort',
    String(options.port),
  ];
  args.push('--disableTelemetry', '--skipApiVersionCheck', '--loose', '--silent');
  if (options.tls) {
    args.push('--cert', options.tls.certPath, '--key', options.tls.keyPath);
    if (options.tls.oauth) args.push('--oauth', options.tls.oauth);
  }
  if (options.location) {
    fs.mkdirSync(options.location, { recursive: true });
    args.push('--location', options.location);
  } else {
    args.push('--inMemoryPersistence');
  }
  const proc = spawnManaged({
    name: 'azurite',
    command: process.execPath,
    args,
    logFile: options.logFile,
    detached: options.detached,
    pidFile: options.pidFile,
  });
  return readyOrStopped(
    proc,
    waitForPort(options.port, 'Azurite', { logFile: options.logFile, exited: proc.exited }),
  );
}
