// The quickstart's demo machine: a qemu-storage-daemon serving a qcow2 disk (partly filled with
// mixed data, the rest sparse), a workload writing records to it, protected by OSR.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  createQcow2,
  startStorageDaemon,
  stopStorageDaemon,
  storageDaemonPaths,
} from '../../lib/qemu/storage-daemon';
import { NbdClient } from '../../lib/qemu/nbd-client';
import type { OsrConfig } from '../../lib/config/config';
import { isAlive, readPidFile, spawnManaged, stopPid } from '../../lib/process/managed-process';
import { statePaths } from '../../lib/config/state-paths';
import { checkName } from '../../shared/names';

export interface DemoPaths {
  dir: string;
  disk: string;
  workloadPidFile: string;
  workloadLog: string;
}

export function demoPaths(config: OsrConfig, name: string): DemoPaths {
  const dir = path.join(statePaths(config).root, 'demo', name);
  return {
    dir,
    disk: path.join(dir, 'disk0.qcow2'),
    workloadPidFile: path.join(statePaths(config).run, `demo-${name}-workload.pid`),
    workloadLog: path.join(statePaths(config).logs, `demo-${name}-workload.log`),
  };
}

/** Writes `bytes` of mixed data (random and text-like) at the start of the disk. */
async function fillDisk(nbd: NbdClient, bytes: number): Promise<void> {
  const chunk = 4 * 1024 * 1024;
  const text = Buffer.from(
    'Open Site Recovery demo data: a line of a log file that compresses well. '.repeat(60000),
  );
  for (let off = 0; off < bytes; off += chunk) {
    const buf = (off / chunk) % 2 === 0 ? randomBytes(chunk) : text.subarray(0, chunk);
    await nbd.write(off, buf);
  }
  await nbd.flush();
}

export async function startDemoMachine(
  config: OsrConfig,
  name: string,
  options: { sizeBytes: number; rate: number; workloadEntry: string },
) {
  // The name becomes a folder and file names: checked like every machine name.
  checkName('machine', name);
  const p = demoPaths(config, name);
  fs.mkdirSync(p.dir, { recursive: true });
  const fresh = !fs.existsSync(p.disk);
  if (fresh) await createQcow2(p.disk, options.sizeBytes);
  const qsdPid = readPidFile(storageDaemonPaths(p.dir).pidFile);
  const daemon =
    qsdPid && isAlive(qsdPid)
      ? { ...storageDaemonPaths(p.dir), pid: qsdPid }
      : await startStorageDaemon({ stateDir: p.dir, images: [p.disk], detached: true });
  if (fresh) {
    const nbd = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'disk0' });
    await fillDisk(nbd, Math.min(64 * 1024 * 1024, Math.floor(options.sizeBytes / 4)));
    await nbd.close();
  }
  const workloadPid = readPidFile(p.workloadPidFile);
  if (!workloadPid || !isAlive(workloadPid)) {
    spawnManaged({
      name: 'demo-workload',
      command: process.execPath,
      args: [options.workloadEntry, daemon.nbdSocket, 'disk0', String(options.rate)],
      logFile: p.workloadLog,
      detached: true,
      pidFile: p.workloadPidFile,
    });
  }
  return { qmpSocket: daemon.qmpSocket, nbdSocket: daemon.nbdSocket, disk: p.disk };
}

/** Stops every demo machine's workload and storage daemon under the state folder. */
export async function stopDemoMachines(config: OsrConfig): Promise<string[]> {
  const root = path.join(statePaths(config).root, 'demo');
  const stopped: string[] = [];
  for (const name of fs.existsSync(root) ? fs.readdirSync(root) : []) {
    const p = demoPaths(config, name);
    const pid = readPidFile(p.workloadPidFile);
    if (pid) await stopPid(pid);
    fs.rmSync(p.workloadPidFile, { force: true });
    if (await stopStorageDaemon(p.dir)) stopped.push(name);
  }
  return stopped;
}
