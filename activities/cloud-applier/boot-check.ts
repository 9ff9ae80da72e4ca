// The boot check of a recovered machine: start it with the operator's command (which may keep
// running, as a VM does), then run the probe until it succeeds or its timeout passes, then stop
// the command. The result is reported, never thrown: a failed boot check is a finding of the
// drill, not a reason to retry the activity.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { BootCheck, BootCheckResult } from '../../shared/recovery-types';
import { runningStorageDaemon, storageDaemonPaths } from '../../lib/qemu/storage-daemon';

const OUTPUT_TAIL = 2000;

export interface BootCheckInput {
  machine: string;
  pointId: string;
  check: BootCheck;
  /** What the command boots: local image files when materialized, else osr-failover blob names. */
  disks: string[];
  blobs: string[];
  /**
   * NBD URIs of the disks, in the order of `disks`, when a storage daemon of the materialized
   * machine serves them: a VM booted on these shares the images with the daemon (which holds their
   * locks), and its writes land in the recovered machine.
   */
  nbd?: string[];
  /**
   * Where the command's process group id is kept while it runs: a retried attempt (after this
   * worker was killed) stops the group the dead attempt left behind before starting another.
   */
  pidFile?: string;
}

/**
 * `signal` is the activity's cancellation: a cancelled recovery, or a worker shutting down, stops
 * the command's group at once (a booted VM must not outlive the job that started it) and throws.
 */
export async function runBootCheck(input: BootCheckInput, signal?: AbortSignal): Promise<BootCheckResult> {
  const started = Date.now();
  const env = {
    ...process.env,
    OSR_MACHINE: input.machine,
    OSR_POINT_ID: input.pointId,
    OSR_RECOVERED_DISKS: input.disks.join(','),
    OSR_RECOVERED_BLOBS: input.blobs.join(','),
    OSR_RECOVERED_NBD: (input.nbd ?? []).join(','),
  };
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL);
  };
  const commandMs = (input.check.commandTimeoutSeconds ?? 300) * 1000;
  const probeMs = (input.check.probeTimeoutSeconds ?? 60) * 1000;

  if (input.pidFile) await stopLeftover(input.pidFile);
  // Its own process group, so stopping it stops what it started.
  const command = spawn('/bin/sh', ['-c', input.check.command], { env, detached: true });
  if (input.pidFile && command.pid !== undefined) {
    await fs.mkdir(path.dirname(input.pidFile), { recursive: true });
    await fs.writeFile(input.pidFile, String(command.pid));
  }
  command.stdout.on('data', keep);
  command.stderr.on('data', keep);
  const onAbort = () => stop(command);
  signal?.addEventListener('abort', onAbort, { once: true });
  let exit: { code: number | null } | undefined;
  const exited = new Promise<void>((resolve) => {
    command.once('exit', (code) => {
      exit = { code };
      resolve();
    });
    command.once('error', (err) => {
      keep(Buffer.from(`${err.message}\n`));
      exit = { code: null };
      resolve();
    });
  });
  const finish = (ok: boolean, attempts: number, reason?: string): BootCheckResult => ({
    ok,
    ...(reason ? { reason } : {}),
    commandExitCode: exit?.code,
    probeAttempts: attempts,
    durationMs: Date.now() - started,
    output,
  });

  try {
    const deadline = Date.now() + Math.min(probeMs, commandMs);
    let attempts = 0;
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      if (exit && exit.code !== 0) return finish(false, attempts, `the boot command exited ${exit.code}`);
      attempts += 1;
      const probe = await runProbe(
        input.check.probe,
        env,
        Math.max(1000, deadline - Date.now()),
        keep,
        signal,
      );
      if (signal?.aborted) throw signal.reason;
      if (probe === 0) return finish(true, attempts);
      if (Date.now() >= deadline)
        return finish(false, attempts, `the probe did not succeed within ${Math.round(probeMs / 1000)} s`);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 500))]);
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    stop(command);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (input.pidFile) await fs.rm(input.pidFile, { force: true });
  }
}

async function stopLeftover(pidFile: string): Promise<void> {
  const pgid = Number.parseInt(await fs.readFile(pidFile, 'utf8').catch(() => ''), 10);
  if (Number.isInteger(pgid) && pgid > 1) {
    try {
      process.kill(-pgid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
  await fs.rm(pidFile, { force: true });
}

function runProbe(
  probe: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  keep: (chunk: Buffer) => void,
  signal?: AbortSignal,
): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', probe], { env, detached: true });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const onAbort = () => stop(child);
    const timer = setTimeout(onAbort, timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    child.once('error', () => resolve(null));
    child.once('exit', (code) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(code);
    });
  });
}

function stop(child: ChildProcess): void {
  // The group, even when its leader has exited: a command may leave a VM running in the background.
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    // Already gone.
  }
}

/**
 * The NBD exports of a materialized machine's running storage daemon for `disks` (its image files,
 * served as disk0, disk1… in this order), or none when they are not served (not materialized).
 */
export async function servedExports(dir: string, disks: string[]): Promise<string[]> {
  if (!disks.length || disks.some((d) => path.dirname(d) !== dir)) return [];
  if ((await runningStorageDaemon(dir)) === undefined) return [];
  const socket = storageDaemonPaths(dir).nbdSocket;
  return disks.map((_d, i) => `nbd+unix:///disk${i}?socket=${socket}`);
}
