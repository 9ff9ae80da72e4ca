// The benchmark's private stack: a Temporal dev server (in memory), Azurite with its data in a
// folder (the big runs hold several GiB of blobs at once; on disk they do not compete with the
// workers for RAM) and the three OSR workers as child processes running the compiled entry
// points. Also the cleanup list every part registers with, so a failure still stops everything.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { azuriteConnectionString } from '../lib/azure/blob-client';
import { loadConfig, type OsrConfig } from '../lib/config/config';
import { ControlContext } from '../operations/context';
import { startAzurite } from '../stack/azurite';
import { spawnManaged, stopPid, type RunningProcess, waitForLogLine } from '../lib/process/managed-process';
import { freePort } from '../lib/process/ports';
import type { WorkerRole } from '../stack/stack';
import { startTemporalDevServer } from '../temporal-dev/dev-server';

/** The folder holding package.json: found by walking up, so dist/ and any other outDir both work. */
export const projectRoot = findProjectRoot(__dirname);
const workersDir = path.resolve(__dirname, '..', 'workers');

function findProjectRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && fs.existsSync(path.join(dir, 'node_modules'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no project root (package.json) above ${from}`);
  }
}

/** Steps run last-in first-out; every step runs even if an earlier one fails. */
export class Cleanup {
  readonly #steps: Array<{ what: string; fn: () => Promise<void> | void }> = [];
  #running: Promise<void> | undefined;

  add(what: string, fn: () => Promise<void> | void): void {
    this.#steps.push({ what, fn });
  }

  /** Runs the steps once; a second caller (a signal during the normal end) waits for the same run. */
  run(): Promise<void> {
    this.#running ??= (async () => {
      for (const step of this.#steps.reverse()) {
        try {
          await step.fn();
        } catch (err) {
          console.error(`cleanup: ${step.what} failed: ${(err as Error).message}`);
        }
      }
    })();
    return this.#running;
  }
}

/** A temp folder removed by the cleanup. */
export function tempDir(cleanup: Cleanup, prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  cleanup.add(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface BenchStack {
  config: OsrConfig;
  ctx: ControlContext;
  stateDir: string;
  azuritePort: number;
  temporalPort: number;
  logs: string;
  /** Processes of the stack by name (temporal, azurite and the worker roles), for CPU accounting. */
  pids: Record<string, number>;
  /** With `processServerSite`: stops the process server and starts it reaching the servers at
   *  another address (e.g. through a latency proxy); returns its new pid. */
  restartProcessServer(serversAt: string): Promise<number>;
}

export interface BenchStackOptions {
  /** More environment for the workers (e.g. OSR_HEARTBEAT_SECONDS). */
  env?: NodeJS.ProcessEnv;
  /** Process-server workers polling the same queue (default 1; named process-server-<n> when more). */
  processServers?: number;
  /** Where Temporal and Azurite listen (default loopback; 0.0.0.0 so another site reaches them). */
  listenHost?: string;
  /** The process servers run elsewhere (the WAN benchmark's primary site): a command prefix such
   *  as `ip netns exec <ns>`, and the address they reach Temporal and Azurite at (across the link). */
  processServerSite?: { prefix: string[]; serversAt: string };
  /** The workers' compiled entry points (default this tree's): another build, such as main's, to
   *  run the same measurement on its code in the same run. */
  workersDir?: string;
}

export async function startBenchStack(
  cleanup: Cleanup,
  workDir: string,
  options: BenchStackOptions = {},
): Promise<BenchStack> {
  const stateDir = path.join(workDir, 'state');
  const logs = path.join(stateDir, 'logs');
  fs.mkdirSync(logs, { recursive: true });
  const [temporalPort, azuritePort] = [await freePort(), await freePort()];
  const configFile = path.join(stateDir, 'bench-config.json');
  fs.writeFileSync(configFile, '{}');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OSR_CONFIG: configFile,
    OSR_STATE_DIR: stateDir,
    OSR_TEMPORAL_PORT: String(temporalPort),
    OSR_AZURITE_PORT: String(azuritePort),
    OSR_LOG_LEVEL: 'info',
    ...options.env,
  };
  // The benchmark runs the embedded parts only: never a configured cluster or storage account.
  delete env.OSR_TEMPORAL_ADDRESS;
  delete env.OSR_STORAGE_CONNECTION_STRING;
  delete env.AZURE_STORAGE_CONNECTION_STRING;
  const config = loadConfig({ env });

  const temporal = await startTemporalDevServer({
    binary: process.env.OSR_TEMPORAL_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'temporal'),
    port: temporalPort,
    uiPort: 0,
    headless: true,
    ip: options.listenHost,
    namespace: config.temporal.namespace,
    logFile: path.join(logs, 'temporal.log'),
  });
  cleanup.add('stop Temporal', async () => void (await stopPid(temporal.pid)));
  const azurite = await startAzurite({
    port: azuritePort,
    location: path.join(workDir, 'azurite'),
    host: options.listenHost,
    logFile: path.join(logs, 'azurite.log'),
  });
  cleanup.add('stop Azurite', async () => void (await stopPid(azurite.pid)));

  const pids: Record<string, number> = { temporal: temporal.pid, azurite: azurite.pid };
  const remoteSite = options.processServerSite && { ...options.processServerSite };
  const startWorker = async (
    role: WorkerRole,
    name: string = role,
    logName = name,
  ): Promise<RunningProcess> => {
    // A log of its own per start: waiting for 'worker polling' must not find the last start's line.
    const logFile = path.join(logs, `${logName}.log`);
    const site = role === 'process-server' ? remoteSite : undefined;
    const [command, ...args] = [
      ...(site?.prefix ?? []),
      process.execPath,
      // OSR_BENCH_WORKER_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof": Node flags for the
      // workers only (NODE_OPTIONS refuses --cpu-prof), to see where a slow step spends its CPU.
      ...(process.env.OSR_BENCH_WORKER_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? []),
      path.join(options.workersDir ?? workersDir, `${role}.js`),
    ];
    const proc = spawnManaged({
      name,
      command: command as string,
      args,
      logFile,
      env: site
        ? {
            ...env,
            OSR_TEMPORAL_ADDRESS: `${site.serversAt}:${temporalPort}`,
            OSR_STORAGE_CONNECTION_STRING: azuriteConnectionString(azuritePort, site.serversAt),
          }
        : env,
    });
    // A worker draining a long activity is not worth waiting for at the end: 5 s, then SIGKILL.
    cleanup.add(`stop ${name} worker`, async () => void (await stopPid(proc.pid, 5_000)));
    await waitForLogLine(logFile, 'worker polling', proc.exited, 60_000);
    pids[name] = proc.pid;
    return proc;
  };
  // The applier first: it creates the key file the process servers then read.
  await Promise.all([startWorker('control'), startWorker('cloud-applier')]);
  const servers = options.processServers ?? 1;
  await Promise.all(
    Array.from({ length: servers }, (_, i) =>
      startWorker('process-server', servers === 1 ? 'process-server' : `process-server-${i + 1}`),
    ),
  );

  const ctx = new ControlContext(config);
  cleanup.add('close the Temporal client', () => ctx.close());
  let restarts = 0;
  const restartProcessServer = async (serversAt: string): Promise<number> => {
    if (!remoteSite || servers !== 1)
      throw new Error('restartProcessServer needs one process server in a site of its own');
    await stopPid(pids['process-server'] as number, 5_000);
    remoteSite.serversAt = serversAt;
    await startWorker('process-server', 'process-server', `process-server-${++restarts + 1}`);
    return pids['process-server'] as number;
  };
  return { config, ctx, stateDir, azuritePort, temporalPort, logs, pids, restartProcessServer };
}

/**
 * The frame of every benchmark entry point: runs `main` with a cleanup list that runs at the end,
 * also on failure or Ctrl-C; the exit code is non-zero only on errors.
 */
export function runMain(main: (cleanup: Cleanup) => Promise<void>, say: (msg: string) => void): void {
  const cleanup = new Cleanup();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`${signal}: stopping and cleaning up`);
      void cleanup.run().finally(() => process.exit(130));
    });
  }
  void (async () => {
    try {
      await main(cleanup);
    } catch (err) {
      console.error(err);
      process.exitCode = 1;
    } finally {
      say('cleaning up');
      await cleanup.run();
    }
    // Whatever handle a library left open, the run is over.
    process.exit();
  })();
}

/** Seconds since `start` (a performance.now() value). */
export function secondsSince(start: number): number {
  return (performance.now() - start) / 1000;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Runs a command to completion; if the run is cut short first, the cleanup kills it. */
export function runCommand(
  cleanup: Cleanup,
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    let done = false;
    const child = execFile(
      command,
      args,
      { env: options.env, timeout: options.timeoutMs ?? 0, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        done = true;
        if (err) reject(new Error(`${command} failed: ${(stderr || err.message).trim().slice(-2000)}`));
        else resolve({ stdout, stderr });
      },
    );
    cleanup.add(`stop ${command} (pid ${child.pid ?? '?'})`, () => {
      if (!done) child.kill('SIGKILL');
    });
  });
}
