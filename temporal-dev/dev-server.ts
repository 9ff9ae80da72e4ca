// Starts the official Temporal dev server (built by temporal-dev/build.sh) on loopback with its
// Web UI, SQLite persistence and OSR's search attributes registered at start.
import fs from 'node:fs';
import path from 'node:path';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../shared/search-attributes';
import { readyOrStopped, spawnManaged, type RunningProcess } from '../lib/process/managed-process';
import { waitForPort } from '../lib/process/ports';

export interface DevServerOptions {
  binary: string;
  port: number;
  uiPort: number;
  /** SQLite file; omitted means in memory (tests). */
  dbFile?: string;
  namespace: string;
  logFile: string;
  detached?: boolean;
  pidFile?: string;
  headless?: boolean;
  /** The address it listens on (default loopback; 0.0.0.0 to be reached from another namespace). */
  ip?: string;
}

export function missingBinaryMessage(binary: string): string {
  return `Temporal CLI not found at ${binary}. Fix: run \`npm run setup\` (it builds it with temporal-dev/build.sh), or set temporal.address to use an existing Temporal cluster.`;
}

export async function startTemporalDevServer(options: DevServerOptions): Promise<RunningProcess> {
  if (!fs.existsSync(options.binary)) throw new Error(missingBinaryMessage(options.binary));
  const args = [
    'server',
    'start-dev',
    '--ip',
    options.ip ?? '127.0.0.1',
    '--port',
    String(options.port),
    '--namespace',
    options.namespace,
  ];
  args.push('--log-format', 'json', '--log-level', 'warn');
  if (options.headless) args.push('--headless');
  else args.push('--ui-port', String(options.uiPort), '--ui-ip', '127.0.0.1');
  if (options.dbFile) {
    fs.mkdirSync(path.dirname(options.dbFile), { recursive: true });
    args.push('--db-filename', options.dbFile);
  }
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTE_DEFINITIONS)) {
    args.push('--search-attribute', `${name}=${type}`);
  }
  const proc = spawnManaged({
    name: 'temporal',
    command: options.binary,
    args,
    logFile: options.logFile,
    detached: options.detached,
    pidFile: options.pidFile,
  });
  const listening = async () => {
    await waitForPort(options.port, 'Temporal dev server', { logFile: options.logFile, exited: proc.exited });
    if (!options.headless) {
      await waitForPort(options.uiPort, 'Temporal Web UI', { logFile: options.logFile, exited: proc.exited });
    }
  };
  return readyOrStopped(proc, listening());
}
