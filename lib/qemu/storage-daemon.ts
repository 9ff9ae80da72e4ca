// Runs a qemu-storage-daemon that plays "the machine": it serves disk images as block nodes
// (disk0, disk1…), with a QMP monitor for the CBT connector and a writable NBD export of each
// disk through which a workload writes. The quickstart's demo machine is one of these.
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { IO_FILTER_PREFIX, IO_THROTTLE_GROUP } from './fleecing-graph';
import { QmpClient } from './qmp-client';

const execFileAsync = promisify(execFile);

export type DiskFormat = 'qcow2' | 'raw';

export interface DiskImage {
  path: string;
  /** Probed with `qemu-img info` when left out. */
  format?: DiskFormat;
}

export interface StorageDaemonOptions {
  /** Folder for the sockets, pidfile and log; created if missing. */
  stateDir: string;
  images: Array<string | DiskImage>;
  /** Path of the qemu-storage-daemon binary (default: found on PATH). */
  binary?: string;
  /** How long to wait for QMP to answer after start (default 15 s). */
  readyTimeoutMs?: number;
  /** Keep the daemon running after this Node process exits (the demo machine does). */
  detached?: boolean;
}

export interface ServedDisk {
  /** Block node name, also the NBD export name and export id. */
  node: string;
  path: string;
  format: DiskFormat;
}

export interface StorageDaemon {
  stateDir: string;
  qmpSocket: string;
  nbdSocket: string;
  pidFile: string;
  logFile: string;
  pid: number;
  disks: ServedDisk[];
  /** Graceful stop (SIGTERM lets QEMU store persistent bitmaps); SIGKILL after a timeout. */
  stop(): Promise<void>;
}

// sun_path is 108 bytes on Linux including the terminating NUL.
const MAX_UNIX_PATH = 107;

export function storageDaemonPaths(stateDir: string): {
  qmpSocket: string;
  nbdSocket: string;
  pidFile: string;
  logFile: string;
} {
  const dir = path.resolve(stateDir);
  return {
    qmpSocket: path.join(dir, 'qmp.sock'),
    nbdSocket: path.join(dir, 'nbd.sock'),
    pidFile: path.join(dir, 'qsd.pid'),
    logFile: path.join(dir, 'qsd.log'),
  };
}

/** The pid of the qemu-storage-daemon serving `stateDir`, if one runs. */
export function runningStorageDaemon(stateDir: string): Promise<number | undefined> {
  return runningPid(storageDaemonPaths(stateDir).pidFile);
}

export async function startStorageDaemon(options: StorageDaemonOptions): Promise<StorageDaemon> {
  if (options.images.length === 0) throw new Error('startStorageDaemon: no disk images given');
  const stateDir = path.resolve(options.stateDir);
  const paths = storageDaemonPaths(stateDir);
  for (const p of [paths.qmpSocket, paths.nbdSocket]) {
    if (Buffer.byteLength(p) > MAX_UNIX_PATH) {
      throw new Error(
        `socket path ${p} is longer than ${MAX_UNIX_PATH} bytes: choose a shorter state folder`,
      );
    }
  }
  await fs.promises.mkdir(stateDir, { recursive: true });
  const running = await runningPid(paths.pidFile);
  if (running !== undefined) {
    throw new Error(`a qemu-storage-daemon already runs for ${stateDir} (pid ${running}); stop it first`);
  }
  // QEMU leaves the NBD socket behind on exit and refuses to bind over an existing file.
  await Promise.all(
    [paths.qmpSocket, paths.nbdSocket, paths.pidFile].map((p) => fs.promises.rm(p, { force: true })),
  );

  const disks: ServedDisk[] = [];
  for (const [i, image] of options.images.entries()) {
    const spec = typeof image === 'string' ? { path: image } : image;
    const abs = path.resolve(spec.path);
    disks.push({ node: `disk${i}`, path: abs, format: spec.format ?? (await probeFormat(abs)) });
  }

  // The workload writes through a pass-through filter (a throttle group without limits): the
  // process server can move it onto a fleecing filter (fleecing-graph.ts) and back.
  const args: string[] = ['--object', `throttle-group,id=${IO_THROTTLE_GROUP}`];
  for (const d of disks) {
    const blockdev = { driver: d.format, 'node-name': d.node, file: { driver: 'file', filename: d.path } };
    const io = {
      driver: 'throttle',
      'node-name': ioNode(d),
      'throttle-group': IO_THROTTLE_GROUP,
      file: d.node,
    };
    args.push('--blockdev', JSON.stringify(blockdev), '--blockdev', JSON.stringify(io));
  }
  args.push('--nbd-server', JSON.stringify({ addr: { type: 'unix', path: paths.nbdSocket } }));
  for (const d of disks) {
    const exp = { type: 'nbd', id: d.node, 'node-name': ioNode(d), name: d.node, writable: true };
    args.push('--export', JSON.stringify(exp));
  }
  // The chardev option has no JSON form; QEMU escapes a comma by doubling it.
  args.push('--chardev', `socket,id=qmp0,path=${paths.qmpSocket.replace(/,/g, ',,')},server=on,wait=off`);
  args.push('--monitor', 'chardev=qmp0,mode=control');
  args.push('--pidfile', paths.pidFile);

  const log = await fs.promises.open(paths.logFile, 'a');
  const binary = options.binary ?? 'qemu-storage-daemon';
  const child = spawn(binary, args, {
    stdio: ['ignore', log.fd, log.fd],
    detached: options.detached ?? false,
  });
  await log.close();
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve();
    });
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  if (options.detached) child.unref();

  const timeoutMs = options.readyTimeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const failed = await Promise.race([spawnError, sleep(100).then(() => undefined)]);
    if (failed) throw new Error(`cannot start ${binary}: ${failed.message}`);
    if (exited) {
      throw new Error(
        `qemu-storage-daemon exited at start (code ${exited.code}, signal ${exited.signal}): ${await tail(paths.logFile)}`,
      );
    }
    if (fs.existsSync(paths.qmpSocket)) {
      try {
        const qmp = await QmpClient.connect(paths.qmpSocket, { greetingTimeoutMs: 2000 });
        await qmp.close();
        break;
      } catch {
        // Not answering yet: try again until the deadline.
      }
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`qemu-storage-daemon did not answer on ${paths.qmpSocket} within ${timeoutMs} ms`);
    }
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error('qemu-storage-daemon has no pid');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exited) {
        child.kill('SIGTERM');
        // SIGTERM makes QEMU flush and store its persistent bitmaps; SIGKILL would lose them.
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exitPromise;
        clearTimeout(timer);
      }
      await fs.promises.rm(paths.nbdSocket, { force: true });
    })();
    return stopping;
  };

  return { stateDir, ...paths, pid, disks, stop };
}

/**
 * Stops a daemon started earlier for `stateDir`, maybe by another process (`detached`).
 * Returns false when none was running.
 */
export async function stopStorageDaemon(stateDir: string, timeoutMs = 10_000): Promise<boolean> {
  const paths = storageDaemonPaths(stateDir);
  const pid = await runningPid(paths.pidFile);
  if (pid === undefined) return false;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      while (isAlive(pid)) await sleep(50);
      break;
    }
    await sleep(50);
  }
  await Promise.all([paths.nbdSocket, paths.pidFile].map((p) => fs.promises.rm(p, { force: true })));
  return true;
}

/** Creates a sparse qcow2 image of `sizeBytes` (qcow2 keeps persistent dirty bitmaps). */
export async function createQcow2(file: string, sizeBytes: number): Promise<void> {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0)
    throw new Error(`createQcow2: bad size ${sizeBytes}`);
  await fs.promises.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  try {
    await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(sizeBytes)]);
  } catch (err) {
    throw new Error(`qemu-img create ${file} failed: ${stderrOf(err)}`);
  }
}

const ioNode = (d: ServedDisk): string => `${IO_FILTER_PREFIX}${d.node}`;

async function probeFormat(file: string): Promise<DiskFormat> {
  let out: string;
  try {
    // -U: the image may be open elsewhere; only the header is read.
    ({ stdout: out } = await execFileAsync('qemu-img', ['info', '-U', '--output=json', file]));
  } catch (err) {
    throw new Error(`cannot probe the format of ${file}: ${stderrOf(err)}`);
  }
  const format = (JSON.parse(out) as { format?: string }).format;
  if (format !== 'qcow2' && format !== 'raw') {
    throw new Error(`${file} is ${format ?? 'of unknown format'}; only qcow2 and raw disks are served`);
  }
  return format;
}

async function runningPid(pidFile: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await fs.promises.readFile(pidFile, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(text.trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  // A pid can be reused after a reboot: only a storage daemon counts.
  try {
    const cmdline = await fs.promises.readFile(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmdline.includes('qemu-storage-daemon')) return undefined;
  } catch {
    return undefined;
  }
  return pid;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function tail(file: string): Promise<string> {
  try {
    const text = await fs.promises.readFile(file, 'utf8');
    return text.trim().split('\n').slice(-10).join('\n') || '(empty log)';
  } catch {
    return '(no log)';
  }
}

function stderrOf(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr || e.message || String(err)).trim();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
