// The folder of a domain's backup job: its NBD socket and scratch files, on the libvirt host
// (QEMU creates them there). On this machine for a local URI; on the remote host, made and
// removed over SSH, for a qemu+ssh:// one. Short (socket paths are limited to 107 bytes) and
// writable by QEMU's user (libvirt-qemu, or the session's).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LibvirtSource } from '../../shared/replication-types';
import { OpenSshError, sshRun } from '../ssh/openssh';
import { remoteLibvirt, sshFailureMessage, type RemoteLibvirt } from './remote-host';
import { SourceUnreachableError } from '../sources/source-connector';

export interface ExportFolder {
  dir: string;
  socket: string;
  /** The libvirt URI of the remote host the folder is on; undefined: this machine. */
  remoteUri?: string;
  /** Makes the folder, empty. */
  prepare(): Promise<void>;
  remove(): Promise<void>;
}

export function exportFolderOf(source: LibvirtSource): ExportFolder {
  const id = crypto.createHash('sha256').update(`${source.uri}\n${source.domain}`).digest('hex').slice(0, 16);
  const remote = remoteLibvirt(source.uri);
  // A remote host's temporary folder is /tmp whatever this machine's is.
  const dir = remote ? `/tmp/osr-lv-${id}` : path.join(os.tmpdir(), `osr-lv-${id}`);
  const socket = path.posix.join(dir, 'nbd.sock');
  if (!remote)
    return {
      dir,
      socket,
      async prepare() {
        fs.mkdirSync(dir, { recursive: true });
        fs.chmodSync(dir, 0o777);
        for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { force: true });
      },
      async remove() {
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  return {
    dir,
    socket,
    remoteUri: source.uri,
    prepare: () => onHost(remote, `mkdir -p ${dir} && chmod 777 ${dir} && rm -f ${dir}/*`),
    remove: () => onHost(remote, `rm -rf ${dir}`),
  };
}

async function onHost(remote: RemoteLibvirt, command: string): Promise<void> {
  await sshRun(remote, command).catch((err: unknown) => {
    if (err instanceof OpenSshError && err.reason !== 'other')
      throw new SourceUnreachableError(sshFailureMessage(remote, err));
    throw err;
  });
}
