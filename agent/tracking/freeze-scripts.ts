// The machine's own quiesce scripts around an app-consistent point, run by the agent on the
// machine: every executable in /etc/osr-agent/freeze.d (name order) with the argument `freeze`,
// then the `pre` command given at protect (`osr protect --agent … --pre …`); the point; then the
// `post` command and each script that was started with `thaw`, in reverse order. Post and thaw
// always run, whatever failed, and each run is bounded by the time-out (its process group is
// killed): the whole quiesce happens inside one freeze request on the machine, so a dropped
// connection to the process server cannot leave the application quiesced.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { TrackingError } from './errors';

export interface FreezeScripts {
  pre?: string;
  post?: string;
  timeoutSeconds?: number;
}

export function freezeScriptDir(): string {
  return process.env.OSR_AGENT_FREEZE_DIR ?? '/etc/osr-agent/freeze.d';
}

/** Executable regular files of the folder, by name; dot-files and editor leftovers (~) skipped. */
export function freezeScriptsIn(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => !n.startsWith('.') && !n.endsWith('~'))
    .sort()
    .map((n) => path.join(dir, n))
    .filter((file) => {
      try {
        const st = fs.statSync(file);
        return st.isFile() && (st.mode & 0o111) !== 0;
      } catch {
        return false;
      }
    });
}

/**
 * Runs `cut` with the application quiesced. A script or `pre` that fails or times out: what ran
 * is thawed, and a QuiesceError names it (the point is then cut crash-consistent by the workflow).
 * Thaw failures are reported through `warn` and do not undo the point: it was cut quiesced.
 */
export async function withFreezeScripts<T>(
  options: FreezeScripts & { pitId: string; dir?: string; warn: (message: string) => void },
  cut: () => Promise<T>,
): Promise<T> {
  const timeoutMs = (options.timeoutSeconds ?? 60) * 1000;
  const env = { ...process.env, OSR_POINT_IN_TIME: options.pitId, OSR_POINT_KIND: 'app' };
  const scripts = freezeScriptsIn(options.dir ?? freezeScriptDir());
  const started: string[] = [];
  const thaw = async (): Promise<void> => {
    if (options.post)
      await runBounded('/bin/sh', ['-c', options.post], env, timeoutMs).catch((err: Error) =>
        options.warn(`post command: ${err.message}`),
      );
    for (const s of [...started].reverse())
      await runBounded(s, ['thaw'], env, timeoutMs).catch((err: Error) =>
        options.warn(`${s} thaw: ${err.message}`),
      );
  };
  try {
    for (const s of scripts) {
      started.push(s);
      await runBounded(s, ['freeze'], env, timeoutMs).catch((err: Error) => {
        throw new TrackingError('QuiesceError', `freeze script ${s} failed: ${err.message}`);
      });
    }
    if (options.pre)
      await runBounded('/bin/sh', ['-c', options.pre], env, timeoutMs).catch((err: Error) => {
        throw new TrackingError(
          'QuiesceError',
          `pre command ${JSON.stringify(options.pre)} failed: ${err.message}`,
        );
      });
    return await cut();
  } finally {
    await thaw();
  }
}

/** Runs a program in its own process group; rejects on a non-zero exit or after `timeoutMs`. */
function runBounded(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-500);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const tail = stderr.trim().split('\n').slice(-2).join('; ');
      if (timedOut) reject(new Error(`did not finish within ${timeoutMs / 1000} s (killed)`));
      else if (code !== 0) reject(new Error(`exit ${code ?? signal}${tail ? `: ${tail}` : ''}`));
      else resolve();
    });
  });
}
