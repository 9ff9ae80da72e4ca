// Running the built CLI as an operator does, for the tests that drive it: one runner and one
// check of a refusal, so that every CLI test means the same by "exit code" and "no stack trace".
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The built CLI's entry point. */
export const cliMain = path.resolve(__dirname, '..', '..', 'cli', 'main.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `osr args...` with env and returns its exit code and output (a non-zero exit is a result,
 * not an error). A run that outlives the timeout fails the test as hung.
 */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { timeout?: number } = {},
): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cliMain, ...args], {
      env,
      timeout: options.timeout ?? 180_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string; killed?: boolean };
    assert.ok(!e.killed, `osr ${args.join(' ')} hung`);
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A refusal: its exit code, its message, and nothing an operator should not see. */
export function assertRefused(res: CliResult, code: number, message: RegExp): void {
  assert.equal(res.code, code, `exit code; stderr: ${res.stderr}`);
  assert.match(res.stderr, message);
  assert.doesNotMatch(res.stderr, /\n\s+at |\.js:\d+:\d+/, 'no stack trace');
}

/** An osr() for a test file: runCli with the stack's environment (read at each call) plus extraEnv. */
export function cliFor(env: () => NodeJS.ProcessEnv) {
  return (args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> =>
    runCli(args, { ...env(), ...extraEnv });
}

/** `osr protect <name>` for a test machine's daemon, under the "manual" policy. */
export function protectArgs(
  name: string,
  vm: { daemon: { qmpSocket: string; nbdSocket: string } },
): string[] {
  return ['protect', name, '--qmp', vm.daemon.qmpSocket, '--nbd', vm.daemon.nbdSocket, '--policy', 'manual'];
}
