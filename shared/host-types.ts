// Hosts: what runs the primary site's machines, added by the operator once (`osr host add`), so
// that machines are protected and discovered by host name instead of socket paths. A host is
// served by the process servers started for it (`--host`), on its own task queue. Pure: no I/O,
// safe to import from workflow code.
import { vaultSegment } from './names';

/** A libvirt daemon: `qemu:///system` on the process server's machine, or `qemu+ssh://…`. */
export interface LibvirtHost {
  kind: 'libvirt';
  uri: string;
}

/** A vCenter (vSphere SOAP API, vim25), read for discovery. */
export interface VcenterHost {
  kind: 'vcenter';
  /** https://…/sdk */
  url: string;
  user: string;
  /** File on the process server holding the password (never the password itself). */
  passwordFile: string;
  /** SHA-256 fingerprint of the certificate the operator pinned (self-signed vCenters). */
  thumbprint?: string;
}

/** A directory of QEMU monitor sockets (`<machine>.qmp`), as plain QEMU setups keep them. */
export interface SocketDirHost {
  kind: 'sockets';
  dir: string;
}

export type HostConnection = LibvirtHost | VcenterHost | SocketDirHost;

/** A host in the vault (hosts/<name>.json). */
export type HostRecord = HostConnection & {
  name: string;
  /** The site whose primary machines run there (task queues, failover direction). */
  site: string;
  createdAt: string;
};

export const hostDoc = (name: string) => `hosts/${vaultSegment('host name', name)}.json`;
export const HOSTS_PREFIX = 'hosts/';
