// The embedded stack: Temporal dev server (with Web UI), Azurite and the OSR workers, started,
// stopped and reported by `osr stack up|down|status`. A part the configuration points elsewhere
// (temporal.address, storage.connectionString) is not started here.
import fs from 'node:fs';
import path from 'node:path';
import type { OsrConfig } from '../lib/config/config';
import { statePaths } from '../lib/config/state-paths';
import { isEmbeddedStorage } from '../lib/azure/blob-client';
import { isEmbeddedTemporal, temporalAddress } from '../operations/temporal-connection';
import { startTemporalDevServer } from '../temporal-dev/dev-server';
import { stopDemoMachines } from './demo/demo-machine';
import { startAzurite } from './azurite';
import { isAlive, readPidFile, spawnManaged, stopPid, waitForLogLine } from '../lib/process/managed-process';
import { isPortFree, isPortOpen } from '../lib/process/ports';

export const WORKER_ROLES = ['control', 'process-server', 'cloud-applier', 'master-target'] as const;
export type WorkerRole = (typeof WORKER_ROLES)[number];

export interface ComponentStatus {
  name: string;
  state: 'running' | 'stopped' | 'external' | 'unhealthy';
  pid?: number;
  address?: string;
  detail?: string;
}

function pidFile(config: OsrConfig, name: string): string {
  return path.join(statePaths(config).run, `${name}.pid`);
}

function logFile(config: OsrConfig, name: string): string {
  return path.join(statePaths(config).logs, `${name}.log`);
}

function runningPid(config: OsrConfig, name: string): number | undefined {
  const pid = readPidFile(pidFile(config, name));
  return pid !== undefined && isAlive(pid) ? pid : undefined;
}

async function ensurePortFree(port: number, what: string, configKey: string, envName: string): Promise<void> {
  if (!(await isPortFree(port))) {
    throw new Error(
      `Port ${port} (${what}) is taken by another process. Fix: stop that process (\`ss -ltnp 'sport = :${port}'\` shows it), or set ${configKey} in osr.config.json / ${envName} to a free port.`,
    );
  }
}

export interface StackUpOptions {
  /** Path of the compiled worker entry points (dist/workers). */
  workersDir: string;
  roles?: readonly WorkerRole[];
  onProgress?: (message: string) => void;
}

export async function stackUp(config: OsrConfig, options: StackUpOptions): Promise<ComponentStatus[]> {
  const say = options.onProgress ?? (() => undefined);
  const paths = statePaths(config);
  fs.mkdirSync(paths.logs, { recursive: true });
  if (isEmbeddedTemporal(config) && !runningPid(config, 'temporal')) {
    await ensurePortFree(config.temporal.port, 'Temporal gRPC', 'temporal.port', 'OSR_TEMPORAL_PORT');
    await ensurePortFree(
      config.temporal.uiPort,
      'Temporal Web UI',
      'temporal.uiPort',
      'OSR_TEMPORAL_UI_PORT',
    );
    say(
      `starting Temporal dev server on 127.0.0.1:${config.temporal.port} (Web UI :${config.temporal.uiPort})`,
    );
    await startTemporalDevServer({
      binary: paths.temporalBinary,
      port: config.temporal.port,
      uiPort: config.temporal.uiPort,
      dbFile: paths.temporalDb,
      namespace: config.temporal.namespace,
      logFile: logFile(config, 'temporal'),
      detached: true,
      pidFile: pidFile(config, 'temporal'),
    });
  }
  if (isEmbeddedStorage(config) && !runningPid(config, 'azurite')) {
    await ensurePortFree(
      config.storage.azuritePort,
      'Azurite blob',
      'storage.azuritePort',
      'OSR_AZURITE_PORT',
    );
    say(`starting Azurite on 127.0.0.1:${config.storage.azuritePort}`);
    await startAzurite({
      port: config.storage.azuritePort,
      location: paths.azurite,
      logFile: logFile(config, 'azurite'),
      detached: true,
      pidFile: pidFile(config, 'azurite'),
    });
  }
  const starting = [];
  for (const role of options.roles ?? WORKER_ROLES) {
    if (runningPid(config, role)) continue;
    const entry = path.join(options.workersDir, `${role}.js`);
    if (!fs.existsSync(entry))
      throw new Error(`worker entry point ${entry} is missing. Fix: run \`npm run build\`.`);
    say(`starting ${role} worker`);
    const file = logFile(config, role);
    fs.rmSync(file, { force: true });
    const proc = spawnManaged({
      name: role,
      command: process.execPath,
      args: [entry],
      logFile: file,
      env: { ...process.env, OSR_STATE_DIR: config.stateDir },
      detached: true,
      pidFile: pidFile(config, role),
    });
    starting.push(waitForLogLine(file, 'worker polling', proc.exited, 120_000));
  }
  await Promise.all(starting);
  return stackStatus(config);
}

export async function stackStatus(config: OsrConfig): Promise<ComponentStatus[]> {
  const out: ComponentStatus[] = [];
  if (isEmbeddedTemporal(config)) {
    const pid = runningPid(config, 'temporal');
    const grpc = await isPortOpen(config.temporal.port);
    const ui = await isPortOpen(config.temporal.uiPort);
    out.push({
      name: 'temporal',
      state: pid ? (grpc ? 'running' : 'unhealthy') : 'stopped',
      pid,
      address: `127.0.0.1:${config.temporal.port}`,
    });
    out.push({
      name: 'temporal-ui',
      state: pid ? (ui ? 'running' : 'unhealthy') : 'stopped',
      pid,
      address: `http://127.0.0.1:${config.temporal.uiPort}`,
    });
  } else {
    out.push({ name: 'temporal', state: 'external', address: temporalAddress(config) });
  }
  if (isEmbeddedStorage(config)) {
    const pid = runningPid(config, 'azurite');
    const open = await isPortOpen(config.storage.azuritePort);
    out.push({
      name: 'azurite',
      state: pid ? (open ? 'running' : 'unhealthy') : 'stopped',
      pid,
      address: `http://127.0.0.1:${config.storage.azuritePort}`,
    });
  } else {
    out.push({
      name: 'storage',
      state: 'external',
      detail: 'Azure storage account from storage.connectionString',
    });
  }
  for (const role of WORKER_ROLES) {
    const pid = runningPid(config, role);
    out.push({
      name: role,
      state: pid ? 'running' : 'stopped',
      pid,
      detail: pid ? `log ${logFile(config, role)}` : undefined,
    });
  }
  return out;
}

async function stopComponent(
  config: OsrConfig,
  name: string,
  onProgress: (m: string) => void,
): Promise<void> {
  const pid = readPidFile(pidFile(config, name));
  if (pid !== undefined) onProgress(`${name}: ${await stopPid(pid, 15_000)}`);
  fs.rmSync(pidFile(config, name), { force: true });
}

/** Stops workers first (they drain), then demo machines, Azurite and Temporal. Leaves no process behind. */
export async function stackDown(
  config: OsrConfig,
  onProgress: (m: string) => void = () => undefined,
): Promise<void> {
  await Promise.all(WORKER_ROLES.map((role) => stopComponent(config, role, onProgress)));
  for (const name of await stopDemoMachines(config)) onProgress(`demo machine ${name}: stopped`);
  for (const name of ['azurite', 'temporal']) await stopComponent(config, name, onProgress);
}

/**
 * What `osr stack reset` deletes: the embedded parts' state (Temporal's database, Azurite's data,
 * the demo machines, run and log files, the process servers' work folders). Kept: the built
 * Temporal binary and the encryption key (a configured real storage account may hold data under
 * it). A configured Temporal or storage account is never touched.
 */
export function resettablePaths(config: OsrConfig): string[] {
  const p = statePaths(config);
  const out = [
    path.dirname(p.temporalDb),
    p.azurite,
    path.join(p.root, 'demo'),
    p.run,
    p.logs,
    p.machines,
    p.spool,
  ];
  return out.filter((dir) => {
    if (dir === path.dirname(p.temporalDb) && !isEmbeddedTemporal(config)) return false;
    if (dir === p.azurite && !isEmbeddedStorage(config)) return false;
    return fs.existsSync(dir);
  });
}

/** Stops everything, then deletes the embedded state (see resettablePaths). */
export async function stackReset(
  config: OsrConfig,
  onProgress: (m: string) => void = () => undefined,
): Promise<string[]> {
  await stackDown(config, onProgress);
  const removed = resettablePaths(config);
  for (const dir of removed) {
    await fs.promises.rm(dir, { recursive: true, force: true });
    onProgress(`removed ${dir}`);
  }
  return removed;
}
