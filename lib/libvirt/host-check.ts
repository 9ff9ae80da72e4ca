// Adding and reading a libvirt host: does the URI answer, and can its libvirt and QEMU track
// changes (checkpoints and pull-mode backups)? What does it run? Used by `osr host add --libvirt`
// and discovery, on a process server of the host.
import type { DiscoveredMachine } from '../../shared/host-types';
import { domainInfo, domainNames } from './domain';
import { checkSshLogin, remoteLibvirt } from './remote-host';
import { parseXml, virsh, VirshError, VirshMissingError, type XmlNode } from './virsh';

/** libvirt 7.2 enabled the incremental-backup API for QEMU by default (before: a capability flag). */
const MIN_LIBVIRT: [number, number] = [7, 2];
/** QEMU 4.2: persistent dirty bitmaps and NBD bitmap exports as libvirt uses them. */
const MIN_QEMU: [number, number] = [4, 2];

/** A libvirt host OSR cannot use; the message names the problem and the fix. */
export class LibvirtHostError extends Error {
  override readonly name = 'LibvirtHostError';
}

export interface LibvirtHostFacts {
  uri: string;
  libvirtVersion: string;
  hypervisorVersion: string;
  /** What libvirt says of `virDomainBackupBegin` for its default domain type. */
  backupSupported: boolean;
}

const older = (v: string, min: [number, number]) => {
  const [a = 0, b = 0] = v.split('.').map(Number);
  return a < min[0] || (a === min[0] && b < min[1]);
};

/**
 * Refuses a URI that does not answer (with libvirt's own reason) or a libvirt/QEMU without the
 * checkpoint and backup API, each with what to do about it.
 */
export async function checkLibvirtHost(uri: string): Promise<LibvirtHostFacts> {
  // A remote host: OSR's own ssh (the backup's export) must log in as virsh does.
  const remote = remoteLibvirt(uri);
  if (remote)
    await checkSshLogin(remote).catch((err: Error) => {
      throw new LibvirtHostError(`libvirt at ${uri}: ${err.message}`);
    });
  let version: string;
  try {
    version = await virsh(uri, ['version'], { timeoutMs: 20_000 });
  } catch (err) {
    if (err instanceof VirshMissingError) throw new LibvirtHostError(err.message);
    const why = err instanceof VirshError ? err.detail : (err as Error).message;
    throw new LibvirtHostError(
      `libvirt at ${uri} does not answer (${why}): start libvirtd there (or check the URI; remote hosts: qemu+ssh://user@host/system with the process server's SSH key, and nc or virt-ssh-helper on the host), then add the host again`,
    );
  }
  const libvirtVersion = /Using library: libvirt ([\d.]+)/.exec(version)?.[1] ?? '0';
  const hypervisorVersion = /Running hypervisor: QEMU ([\d.]+)/.exec(version)?.[1];
  if (!hypervisorVersion)
    throw new LibvirtHostError(
      `libvirt at ${uri} runs no QEMU driver (${version.trim().split('\n').pop() ?? ''}): OSR protects QEMU/KVM domains; use a qemu:// URI`,
    );
  if (older(libvirtVersion, MIN_LIBVIRT) || older(hypervisorVersion, MIN_QEMU))
    throw new LibvirtHostError(
      `libvirt ${libvirtVersion} with QEMU ${hypervisorVersion} at ${uri} has no incremental-backup API (needs libvirt ≥ ${MIN_LIBVIRT.join('.')} and QEMU ≥ ${MIN_QEMU.join('.')}): upgrade them on that host`,
    );
  const caps = parseXml(await virsh(uri, ['domcapabilities'])).domainCapabilities as XmlNode | undefined;
  const backup = (caps?.features as XmlNode | undefined)?.backup as XmlNode | undefined;
  const backupSupported = backup === undefined || backup['@supported'] === 'yes';
  if (!backupSupported)
    throw new LibvirtHostError(
      `libvirt at ${uri} says its QEMU does not support backups (domcapabilities: backup supported='no'): upgrade QEMU on that host`,
    );
  return { uri, libvirtVersion, hypervisorVersion, backupSupported };
}

/** Why a domain's changes cannot be tracked, or undefined when at least one disk is qcow2. */
export function trackingProblem(disks: Array<{ target: string; format: string }>): string | undefined {
  if (disks.length === 0) return 'it has no writable disk';
  if (disks.some((d) => d.format === 'qcow2')) return undefined;
  return `its disks (${disks.map((d) => `${d.target}: ${d.format}`).join(', ')}) are not qcow2, and libvirt keeps persistent change bitmaps only in qcow2; convert them (\`qemu-img convert -O qcow2\`, then point the domain at the new image)`;
}

/** Every domain of the host with its disks and whether OSR can track its changes. */
export async function discoverLibvirt(uri: string, host: string): Promise<DiscoveredMachine[]> {
  const machines: DiscoveredMachine[] = [];
  for (const name of await domainNames(uri)) {
    const info = await domainInfo(uri, name).catch(() => undefined);
    if (!info) continue; // undefined meanwhile
    const problem = trackingProblem(info.disks);
    const raw = info.disks.filter((d) => !d.trackable).map((d) => d.target);
    machines.push({
      host,
      name,
      state: info.state,
      disks: info.disks.map((d) => ({
        diskId: d.target,
        sizeBytes: d.sizeBytes,
        format: d.format,
        location: d.source,
      })),
      changeTracking: problem
        ? { possible: false, reason: problem }
        : raw.length
          ? { possible: true, reason: `${raw.join(', ')} not qcow2: resynchronized by checksums every cycle` }
          : { possible: true },
      details: { uuid: info.uuid },
    });
  }
  return machines;
}
