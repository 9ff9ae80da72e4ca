// A pull-mode backup job of a libvirt domain (virDomainBackupBegin through `virsh backup-begin`):
// libvirt freezes the chosen disks at one instant, creates the point's checkpoint with it, and
// serves each disk read-only over NBD on a unix socket, with the changes since the incremental
// base as the dirty-bitmap context `qemu:dirty-bitmap:backup-<disk>`. One job per domain at a time;
// it survives a restart of libvirtd (QEMU keeps serving), not one of the domain's QEMU process.
import { buildXml, parseXml, virsh, virshWithXml, VirshError, type XmlNode } from './virsh';
import { checkpointXml } from './checkpoints';

export interface BackupDisk {
  target: string;
  /** The base checkpoint to be incremental from; absent: the whole disk (no bitmap). */
  incremental?: string;
  scratchFile: string;
}

export interface BackupRequest {
  socket: string;
  disks: BackupDisk[];
  /** Disks of the domain left out of the backup. */
  skipped: string[];
  /** The point's own checkpoint, created at the backup's instant. */
  checkpoint: { name: string; tracked: string[]; untracked: string[] };
}

export function backupXml(request: BackupRequest): string {
  return buildXml({
    domainbackup: {
      '@mode': 'pull',
      server: { '@transport': 'unix', '@socket': request.socket },
      disks: {
        disk: [
          ...request.disks.map((d) => ({
            '@name': d.target,
            '@backup': 'yes',
            '@type': 'file',
            '@backupmode': d.incremental ? 'incremental' : 'full',
            ...(d.incremental ? { '@incremental': d.incremental } : {}),
            scratch: { '@file': d.scratchFile },
          })),
          ...request.skipped.map((t) => ({ '@name': t, '@backup': 'no' })),
        ],
      },
    },
  });
}

export async function beginBackup(uri: string, domain: string, request: BackupRequest): Promise<void> {
  const { name, tracked, untracked } = request.checkpoint;
  await virshWithXml(
    uri,
    ['backup-begin', '--domain', domain, '--backupxml', '@backup', '--checkpointxml', '@cp'],
    { backup: backupXml(request), cp: checkpointXml(name, tracked, untracked) },
  );
}

/** The domain's running backup job: its NBD socket, or undefined when none runs. */
export async function runningBackup(uri: string, domain: string): Promise<{ socket?: string } | undefined> {
  let xml: string;
  try {
    xml = await virsh(uri, ['backup-dumpxml', '--', domain]);
  } catch (err) {
    // "no domain backup job present" (or the domain is not running): no job.
    if (err instanceof VirshError && /no domain backup job|not running|not active/i.test(err.detail))
      return undefined;
    throw err;
  }
  const doc = parseXml(xml).domainbackup as XmlNode | undefined;
  if (!doc) return undefined;
  return { socket: (doc.server as XmlNode | undefined)?.['@socket'] as string | undefined };
}

/** Ends the domain's backup job (its NBD export goes with it); no job: no-op. */
export async function abortBackup(uri: string, domain: string): Promise<boolean> {
  if (!(await runningBackup(uri, domain))) return false;
  try {
    await virsh(uri, ['domjobabort', '--', domain]);
  } catch (err) {
    if (!(err instanceof VirshError && /no job|not running|not active/i.test(err.detail))) throw err;
  }
  return true;
}
