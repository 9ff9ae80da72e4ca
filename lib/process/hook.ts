// Operators' hook commands (quiesce pre/post, bring-up): run through the shell with a time limit.
import { exec } from 'node:child_process';

/** Runs an operator's hook command; rejects with its exit and the tail of its stderr. */
export function runHook(
  command: string,
  env: NodeJS.ProcessEnv,
  timeout: number,
  what: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    exec(command, { env, timeout }, (err, _stdout, stderr) => {
      if (err) {
        const why = err.killed ? `timed out after ${timeout} ms` : `exit ${String(err.code)}`;
        reject(new Error(`${what} failed (${why}): ${stderr.trim().slice(0, 500)}`));
      } else resolve();
    });
  });
}
