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

/** A disk of a discovered machine. */
export interface DiscoveredDisk {
  /** What `osr protect --disks` takes for this kind (QEMU node name, libvirt target dev, …). */
  diskId: string;
  sizeBytes?: number;
  format?: string;
  /** Where the disk lives (image path, datastore path), for the operator. */
  location?: string;
  /** Whether change tracking on it survives a restart of its process (QEMU: qcow2 bitmaps persist). */
  persistentTracking?: boolean;
}

/** One machine a host runs, with what is needed to protect it. */
export interface DiscoveredMachine {
  host: string;
  /** The host's own name for it (libvirt domain, vCenter VM name, socket file stem). */
  name: string;
  /** running, shut off, poweredOn, poweredOff … as the host says it. */
  state: string;
  disks: DiscoveredDisk[];
  /** Whether OSR can track its changes from the host; if not, why (and what to use instead). */
  changeTracking: { possible: boolean; reason?: string };
  /** The OSR machine protecting it, when there is one. */
  protectedAs?: string;
  /** The enrolled Mobility agent in it (a vCenter VM installed with `osr agent install --vm`). */
  agentId?: string;
  guestOs?: string;
  ipAddresses?: string[];
  /** Extra facts of the kind (vCenter: datacenter, ESXi host, power state). */
  details?: Record<string, string>;
}
