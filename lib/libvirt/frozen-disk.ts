// Reading a frozen disk of a libvirt backup job. A local job's NBD socket is read as QEMU's; a
// remote host's is reached through an SSH tunnel of the reader's own (`ssh -L`, one login per
// reader, closed with it), so the export never listens on the network.
import { openNbdFrozenDisk } from '../qemu/qemu-source';
import {
  SourceUnreachableError,
  type FrozenDiskReader,
  type FrozenSourceDisk,
} from '../sources/source-connector';
import { OpenSshError, openUnixTunnel } from '../ssh/openssh';
import { remoteLibvirt, sshFailureMessage } from './remote-host';

export async function openLibvirtFrozenDisk(disk: FrozenSourceDisk): Promise<FrozenDiskReader> {
  const remote = disk.nbdSocketHost ? remoteLibvirt(disk.nbdSocketHost) : undefined;
  if (!remote) return openNbdFrozenDisk(disk);
  const tunnel = await openUnixTunnel(remote, disk.nbdSocket).catch((err: unknown) => {
    throw err instanceof OpenSshError ? new SourceUnreachableError(sshFailureMessage(remote, err)) : err;
  });
  try {
    const reader = await openNbdFrozenDisk({ ...disk, nbdSocket: tunnel.socket });
    return {
      ...reader,
      close: async () => {
        try {
          await reader.close();
        } finally {
          await tunnel.close();
        }
      },
    };
  } catch (err) {
    await tunnel.close();
    // The host refused the channel: the job's socket is gone there (the backup job ended).
    const refused = /open failed: .*$/m.exec(tunnel.stderr())?.[0];
    if (refused)
      throw new SourceUnreachableError(
        `NBD socket ${disk.nbdSocket} on ${remote.host}: ${refused} (the domain's backup job ended)`,
      );
    throw err;
  }
}
