// A child process of the embedded stack: spawned with its output in a log file, stopped with
// SIGTERM then SIGKILL, and (for `osr stack up`) detached with a pid file so that a later
// `osr stack down` from another shell finds it.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface SpawnOptions {
  name: string;
  command: string;
  args: string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Detached processes outlive this one and are found again through `pidFile`. */
  detached?: boolean;
  pidFile?: string;
}

export interface RunningProcess {
  name: string;
  pid: number;
  logFile: string;
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>;
}

export function spawnManaged(options: SpawnOptions): RunningProcess {
  fs.mkdirSync(path.dirname(options.logFile), { recursive: true });
  const log = fs.openSync(options.logFile, 'a');
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', log, log],
    detached: options.detached ?? false,
  });
  fs.closeSync(log);
  if (child.pid === undefined) throw new Error(`could not start ${options.name} (${options.command})`);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (err) => resolve(`spawn error: ${err.message}`));
  });
  if (options.detached) {
    child.unref();
    if (options.pidFile) {
      fs.mkdirSync(path.dirname(options.pidFile), { recursive: true });
      fs.writeFileSync(options.pidFile, String(child.pid));
    }
  }
  return { name: options.name, pid: child.pid, logFile: options.logFile, exited };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function readPidFile(pidFile: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopPid(pid: number, graceMs = 10_000): Promise<'stopped' | 'killed' | 'not-running'> {
  if (!isAlive(pid)) return 'not-running';
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return 'not-running';
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return 'stopped';
    await sleep(100);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  while (isAlive(pid)) await sleep(50);
  return 'killed';
}

/** Resolves when `needle` appears in the process's log; fails with the log's tail if it exits first. */
export function waitForLogLine(
  file: string,
  needle: string,
  exited: Promise<unknown>,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let exitedWith: unknown;
    void exited.then((code) => (exitedWith = code));
    const deadline = Date.now() + timeoutMs;
    const timer = setInterval(() => {
      const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      if (text.includes(needle)) {
        clearInterval(timer);
        resolve();
      } else if (exitedWith !== undefined || Date.now() > deadline) {
        clearInterval(timer);
        const tail = text.trim().split('\n').slice(-5).join('\n');
        reject(
          new Error(
            `${path.basename(file, '.log')} did not start (${exitedWith !== undefined ? `exited ${String(exitedWith)}` : 'timed out'}); last lines of ${file}:\n${tail}`,
          ),
        );
      }
    }, 100);
  });
}

/** Waits for a started process to be ready; if it never is, stops it, so nothing is left running. */
export async function readyOrStopped(proc: RunningProcess, ready: Promise<void>): Promise<RunningProcess> {
  try {
    await ready;
    return proc;
  } catch (err) {
    await stopPid(proc.pid).catch(() => undefined);
    throw err;
  }
}
