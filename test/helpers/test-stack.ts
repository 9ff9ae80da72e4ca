// A private, real stack for one test file: the Temporal dev server (in memory, headless) and
// Azurite (in memory) on free loopback ports, and OSR workers as child processes running the
// same compiled entry points as production, so a test can kill -9 one of them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { loadConfig, type OsrConfig } from '../../lib/config/config';
import { startAzurite, type AzuriteOptions } from '../../stack/azurite';
import {
  spawnManaged,
  stopPid,
  type RunningProcess,
  waitForLogLine,
} from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';
import type { WorkerRole } from '../../stack/stack';
import { connectClient } from '../../operations/temporal-client';
import { startTemporalDevServer } from '../../temporal-dev/dev-server';

export const projectRoot = path.resolve(__dirname, '..', '..', '..');
const temporalBinary = process.env.OSR_TEMPORAL_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'temporal');
const workersDir = path.resolve(__dirname, '..', '..', 'workers');

export interface TestStack {
  config: OsrConfig;
  env: NodeJS.ProcessEnv;
  stateDir: string;
  client: Client;
  /** `cwd`: the worker's working directory (a test can give it paths only it resolves);
   * `prefix`: a command that runs the worker (e.g. `ip netns exec <ns>`, which execs it: same pid);
   * `name`: what killWorker and stopWorker call it (default: its role), for a second worker of a role. */
  startWorker(
    role: WorkerRole,
    extraEnv?: NodeJS.ProcessEnv,
    options?: { cwd?: string; prefix?: string[]; name?: string },
  ): Promise<RunningProcess>;
  /** kill -9, as a crash would (`name`: the worker's role, or the name it was started under). */
  killWorker(name: string): Promise<void>;
  /** A clean stop (SIGTERM: the worker drains, then exits). */
  stopWorker(name: string): Promise<void>;
  /** kill -9 of the Temporal server or Azurite (needs `persistent`), then start it again on the same data. */
  crashServer(which: 'temporal' | 'azurite'): Promise<void>;
  restartServer(which: 'temporal' | 'azurite'): Promise<void>;
  /** kill -9 of the Temporal server or Azurite for good, with whatever it kept (in memory or not). */
  loseServer(which: 'temporal' | 'azurite'): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestStack(
  options: {
    extraEnv?: NodeJS.ProcessEnv;
    /** Temporal on a SQLite file and Azurite on disk, so both can crash and restart on their data. */
    persistent?: boolean;
    /** Azurite over HTTPS with this certificate (and Entra ID tokens with oauth 'basic'). */
    azuriteTls?: AzuriteOptions['tls'];
  } = {},
): Promise<TestStack> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-test-'));
  const [temporalPort, azuritePort] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OSR_CONFIG: path.join(stateDir, 'no-config.json'),
    OSR_STATE_DIR: stateDir,
    OSR_TEMPORAL_PORT: String(temporalPort),
    OSR_AZURITE_PORT: String(azuritePort),
    OSR_LOG_LEVEL: 'info',
    // No agent listener unless a test asks for one (files run in parallel: 9443 would collide).
    OSR_AGENT_PORT: '0',
    ...options.extraEnv,
  };
  delete env.OSR_TEMPORAL_ADDRESS;
  delete env.OSR_STORAGE_CONNECTION_STRING;
  delete env.AZURE_STORAGE_CONNECTION_STRING;
  fs.writeFileSync(env.OSR_CONFIG as string, '{}');
  const config = loadConfig({ env });
  const logs = path.join(stateDir, 'logs');
  const startTemporal = () =>
    startTemporalDevServer({
      binary: temporalBinary,
      port: temporalPort,
      uiPort: 0,
      headless: true,
      namespace: config.temporal.namespace,
      logFile: path.join(logs, 'temporal.log'),
      dbFile: options.persistent ? path.join(stateDir, 'temporal', 'osr.db') : undefined,
    });
  const startBlobStore = () =>
    startAzurite({
      port: azuritePort,
      logFile: path.join(logs, 'azurite.log'),
      location: options.persistent ? path.join(stateDir, 'azurite') : undefined,
      tls: options.azuriteTls,
    });
  // Both servers start at once (each file pays their start-up, and neither waits on the other).
  const started = await Promise.allSettled([startTemporal(), startBlobStore()]);
  let servers: { temporal: RunningProcess; azurite: RunningProcess };
  let client: Client;
  try {
    const [temporal, azurite] = started.map((s) => {
      if (s.status === 'rejected') throw s.reason;
      return s.value;
    }) as [RunningProcess, RunningProcess];
    servers = { temporal, azurite };
    client = await connectClient(config);
  } catch (err) {
    // A half-started stack is stopped here: nobody else can, and its servers would keep the test file alive.
    for (const s of started) if (s.status === 'fulfilled') await stopPid(s.value.pid).catch(() => undefined);
    throw err;
  }
  const workers = new Map<string, RunningProcess>();
  // Every worker still running, also one whose name a second worker of its role took over (two
  // process servers started without names): stop() must end them all, or the test file hangs.
  const running = new Set<RunningProcess>();

  const stack: TestStack = {
    config,
    env,
    stateDir,
    client,
    async startWorker(role, extraEnv, options = {}) {
      const name = options.name ?? role;
      const logFile = path.join(logs, `${name}-${Date.now()}.log`);
      const [command, ...args] = [
        ...(options.prefix ?? []),
        process.execPath,
        path.join(workersDir, `${role}.js`),
      ];
      const proc = spawnManaged({
        name: role,
        command: command as string,
        args,
        logFile,
        env: { ...env, ...extraEnv },
        cwd: options.cwd,
      });
      workers.set(name, proc);
      running.add(proc);
      void proc.exited.finally(() => running.delete(proc));
      await waitForLogLine(logFile, 'worker polling', proc.exited, 60_000);
      return proc;
    },
    async killWorker(name) {
      const proc = workers.get(name);
      if (!proc) throw new Error(`no ${name} worker running`);
      process.kill(proc.pid, 'SIGKILL');
      await proc.exited;
      workers.delete(name);
    },
    async stopWorker(name) {
      const proc = workers.get(name);
      if (!proc) throw new Error(`no ${name} worker running`);
      await stopPid(proc.pid, 10_000);
      workers.delete(name);
    },
    async crashServer(which) {
      if (!options.persistent) throw new Error('crashServer needs a persistent test stack');
      process.kill(servers[which].pid, 'SIGKILL');
      await servers[which].exited;
    },
    async loseServer(which) {
      process.kill(servers[which].pid, 'SIGKILL');
      await servers[which].exited;
    },
    async restartServer(which) {
      servers[which] = which === 'temporal' ? await startTemporal() : await startBlobStore();
    },
    async stop() {
      await client.connection.close();
      await Promise.all([...running].map((w) => stopPid(w.pid, 10_000)));
      stopLeftBootChecks(stateDir);
      await stopLeftDaemons(stateDir);
      await Promise.all([stopPid(servers.azurite.pid), stopPid(servers.temporal.pid)]);
      if (!process.env.OSR_KEEP_TEST_STATE) fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
  return stack;
}

/** Files under `dir` (recursively) whose name `matches`; none when `dir` is gone. */
function filesUnder(dir: string, matches: (name: string) => boolean): string[] {
  try {
    return (fs.readdirSync(dir, { recursive: true }) as string[])
      .filter((f) => matches(path.basename(f)))
      .map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/**
 * Boot-check groups (a recovered VM) whose worker was killed before it could stop them: the pid
 * file holds the group id, and the group is stopped even when its leader has already exited.
 */
function stopLeftBootChecks(dir: string): void {
  for (const file of filesUnder(dir, (name) => name.endsWith('.boot.pid'))) {
    try {
      const pgid = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
      if (pgid > 1) process.kill(-pgid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

/**
 * Storage daemons left running under the state folder: a committed failover's recovered machine
 * keeps its disks served on purpose (detached from the worker), and would outlive the test.
 * Found by their pid files, and stopped only if the pid is still a qemu-storage-daemon.
 */
async function stopLeftDaemons(dir: string): Promise<void> {
  const pids = filesUnder(dir, (name) => name === 'qsd.pid').flatMap((f) => {
    try {
      const pid = Number(fs.readFileSync(f, 'utf8').trim());
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qemu-storage-daemon') ? [pid] : [];
    } catch {
      return []; // gone meanwhile
    }
  });
  await Promise.all(pids.map((pid) => stopPid(pid, 10_000)));
}
