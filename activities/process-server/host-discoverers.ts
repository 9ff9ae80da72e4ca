// The one place that maps a host's kind to how its machines are discovered, on the host's process
// server. Each discoverer both checks the host (`osr host add`: it answers, the credentials and
// certificate are right) and lists its machines (`osr discover`).
import { checkLibvirtHost, discoverLibvirt } from '../../lib/libvirt/host-check';
import fs from 'node:fs';
import type {
  DiscoveredMachine,
  HostRecord,
  LibvirtHost,
  SocketDirHost,
  VcenterHost,
} from '../../shared/host-types';
import { discoverSocketDir } from '../../lib/qemu/socket-discovery';
import { readInventory } from '../../lib/vsphere/inventory';
import { vmwareMachines } from '../../lib/vsphere/discovered';
import { VsphereError } from '../../lib/vsphere/errors';

/** Registered machines, to find which discovered machine each protects. */
export interface RegisteredSource {
  name: string;
  qmpSocket?: string;
}

type Discoverer<H> = (
  host: H & { name: string },
  registered: RegisteredSource[],
) => Promise<DiscoveredMachine[]>;

/** What lib/libvirt exports for discovery (the libvirt source connector). */
export interface LibvirtLibrary {
  checkLibvirtHost(uri: string): Promise<unknown>;
  discoverLibvirt(uri: string, host: string): Promise<DiscoveredMachine[]>;
}

export class DiscoveryUnavailable extends Error {
  override name = 'DiscoveryUnavailable';
}

/**
 * libvirt hosts, through lib/libvirt. Adapter: the build passes lib/libvirt's two functions here
 * (in DISCOVERERS below); without them a libvirt host is refused, never reported as empty.
 */
export function libvirtDiscoverer(lib?: LibvirtLibrary): Discoverer<LibvirtHost> {
  return async (host) => {
    if (!lib)
      throw new DiscoveryUnavailable(
        `libvirt discovery not available in this build (host ${host.name}, ${host.uri}): this OSR has no libvirt source connector`,
      );
    await lib.checkLibvirtHost(host.uri);
    return lib.discoverLibvirt(host.uri, host.name);
  };
}

const vcenter: Discoverer<VcenterHost> = async (host) => {
  let password: string;
  try {
    password = fs.readFileSync(host.passwordFile, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new VsphereError(
      'credentials',
      `cannot read the password file ${host.passwordFile} on the process server of host ${host.name} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): the file is read where discovery runs; create it there, readable by the process server's user only`,
    );
  }
  const inventory = await readInventory({
    url: host.url,
    user: host.user,
    password,
    thumbprint: host.thumbprint,
  });
  return vmwareMachines(inventory, host.name);
};

const sockets: Discoverer<SocketDirHost> = (host, registered) =>
  discoverSocketDir(
    host.dir,
    host.name,
    registered.flatMap((r) => (r.qmpSocket ? [{ name: r.name, qmpSocket: r.qmpSocket }] : [])),
  );

export const DISCOVERERS: { [K in HostRecord['kind']]: Discoverer<Extract<HostRecord, { kind: K }>> } = {
  vcenter,
  sockets,
  libvirt: libvirtDiscoverer({ checkLibvirtHost, discoverLibvirt }),
};

export function discoverWith(host: HostRecord, registered: RegisteredSource[]): Promise<DiscoveredMachine[]> {
  const discover = DISCOVERERS[host.kind] as Discoverer<HostRecord>;
  return discover(host, registered);
}
