// The master target's disks when the original machine is a libvirt domain: its disk FILES, written
// while the domain is shut off. libvirtd holds the domain's only monitor, so OSR cannot add an
// export to the domain's own QEMU (as it does for a QEMU machine); and a shut-off domain has no
// QEMU at all. So the master target starts a qemu-storage-daemon on the domain's own image files
// (same format, their persistent bitmaps kept and updated) and exports them writable over NBD: the
// same writable exports, checksums, journal and rollback as any original disk. Failback stops the
// daemon (SIGTERM: QEMU stores the bitmaps) and starts the domain again with `virsh start`.
// A domain paused by OSR's planned failover is shut off first (its writes stopped at the failover;
// reprotect overwrites its disks with the recovery site's); a RUNNING domain is refused: it would
// go on writing disks that reprotect overwrites.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { FailbackTarget } from '../../shared/failback-types';
import type { LibvirtSource } from '../../shared/replication-types';
import { domainInfo, NoSuchDomainError, type DomainDisk } from '../../lib/libvirt/domain';
import { remoteLibvirt } from '../../lib/libvirt/remote-host';
import { virsh } from '../../lib/libvirt/virsh';
import {
  runningStorageDaemon,
  startStorageDaemon,
  stopStorageDaemon,
  storageDaemonPaths,
} from '../../lib/qemu/storage-daemon';

/** The original domain's disks, served by a daemon the master target started; or why not. */
export type LibvirtOriginal =
  | { usable: true; qmpSocket: string; nbdSocket: string; nodes: string[]; daemonDir: string }
  | { usable: false; reason: string };

/** Folder of the daemon serving the original domain's files (short: it holds sockets). */
export function libvirtDaemonDir(machineDir: string): string {
  return path.join(machineDir, 'lv');
}

/**
 * Shuts the original domain off (if OSR paused it) and serves its disk files writable. `want`:
 * the recovery site's disks (target devs) and sizes; a missing or smaller disk means the original
 * is not usable (the caller then makes new disks).
 */
export async function serveOriginalDomain(
  machineDir: string,
  machine: string,
  source: LibvirtSource,
  want: Array<{ diskId: string; sizeBytes: number }>,
): Promise<LibvirtOriginal> {
  // Its files are on that host, not here: never shut a domain off for files this machine lacks.
  if (remoteLibvirt(source.uri))
    throw ApplicationFailure.nonRetryable(
      `the original domain ${source.domain} of ${machine} is on a remote libvirt host (${source.uri}): failback onto it is not built`,
    );
  const dir = libvirtDaemonDir(machineDir);
  const paths = storageDaemonPaths(dir);
  const nodes = want.map((_, i) => `disk${i}`);
  // A retried attempt finds the daemon it started (the domain is shut off since then).
  if ((await runningStorageDaemon(dir)) !== undefined)
    return { usable: true, ...paths, nodes, daemonDir: dir };
  let info;
  try {
    info = await domainInfo(source.uri, source.domain);
  } catch (err) {
    if (err instanceof NoSuchDomainError) return { usable: false, reason: err.message };
    throw err;
  }
  const files: DomainDisk[] = [];
  for (const w of want) {
    const disk = info.disks.find((d) => d.target === w.diskId);
    if (!disk?.source || disk.sizeBytes < w.sizeBytes || !['qcow2', 'raw'].includes(disk.format))
      return {
        usable: false,
        reason: `domain ${source.domain} has no ${disk ? '' : 'disk '}${w.diskId} file of ${w.sizeBytes} bytes or more`,
      };
    files.push(disk);
  }
  if (info.state === 'running')
    throw ApplicationFailure.nonRetryable(
      `the original domain ${source.domain} of ${machine} runs (libvirt ${source.uri}): reprotect overwrites its disks, so it must be off. Shut it down (\`virsh -c ${source.uri} shutdown ${source.domain}\`) and reprotect again`,
    );
  // Paused by the planned failover (virsh suspend): its writes stopped there. Off now, so that the
  // daemon can take the images' locks.
  if (info.state !== 'shut off') await virsh(source.uri, ['destroy', '--', source.domain]);
  await fs.mkdir(dir, { recursive: true });
  await startStorageDaemon({
    stateDir: dir,
    images: files.map((f) => ({ path: f.source as string, format: f.format as 'qcow2' | 'raw' })),
    detached: true,
  });
  return { usable: true, ...paths, nodes, daemonDir: dir };
}

/** The daemon serving a libvirt original was stopped (by an earlier attempt): no exports to remove. */
export async function daemonStopped(target: FailbackTarget): Promise<boolean> {
  return !!target.libvirt && (await runningStorageDaemon(target.libvirt.daemonDir)) === undefined;
}

/**
 * A retried bring-up that finds the domain running and the daemon gone: an earlier attempt
 * started it (rollback and exports went with the daemon).
 */
export async function originalDomainStarted(target: FailbackTarget): Promise<boolean> {
  const lv = target.libvirt;
  if (!lv || !(await daemonStopped(target))) return false;
  return (await virsh(lv.uri, ['domstate', '--', lv.domain])).trim() === 'running';
}

/** Failback's bring-up: the daemon lets go of the files and libvirt starts the domain on them. */
export async function startOriginalDomain(target: FailbackTarget): Promise<string> {
  const lv = target.libvirt;
  if (!lv) throw new Error('not a libvirt failback target');
  await stopStorageDaemon(lv.daemonDir, 30_000);
  const state = (await virsh(lv.uri, ['domstate', '--', lv.domain])).trim();
  if (state !== 'running') await virsh(lv.uri, ['start', '--', lv.domain]);
  await removeDaemonDir(lv.daemonDir);
  return `domain ${lv.domain} started on its original disks (libvirt ${lv.uri})`;
}

/** Reprotect given up: the daemon lets go of the files; the domain stays off for the operator. */
export async function releaseOriginalDomain(target: FailbackTarget): Promise<void> {
  if (!target.libvirt) return;
  await stopStorageDaemon(target.libvirt.daemonDir, 30_000);
  await removeDaemonDir(target.libvirt.daemonDir);
}

/**
 * The stopped daemon's folder (sockets, pid file, log), then the machine's master-target folder
 * if nothing else is in it: the domain's disks are its own files, elsewhere.
 */
async function removeDaemonDir(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
  await fs.rmdir(path.dirname(dir)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT' && err.code !== 'ENOTEMPTY') throw err;
  });
}
