// Types of recovery (drills and failovers) that cross the workflow/activity boundary and live in
// the vault. Pure: no I/O, safe to import from workflow code.
import { vaultSegment } from './names';
import type { RecoveryPoint } from './replication-types';
import type { LibvirtResources, LibvirtTargetSettings } from './libvirt-target';

/** drill: a test failover, isolated (`test-` prefix); failover: the machine for real. */
export type RecoveryKind = 'drill' | 'failover';

/** A boot check: `command` starts the recovered machine, `probe` tells whether it came up. */
export interface BootCheck {
  /**
   * Run by the cloud-applier worker with OSR_RECOVERED_DISKS, OSR_MACHINE, OSR_POINT_ID (and
   * OSR_RECOVERED_BLOBS; OSR_RECOVERED_NBD when a materialized machine's daemon serves the disks)
   * in its environment. It may keep running (a VM); it is stopped after the probe.
   */
  command: string;
  /** Retried until it exits 0 or `probeTimeoutSeconds` pass. */
  probe: string;
  commandTimeoutSeconds?: number;
  probeTimeoutSeconds?: number;
}

/** Local disks on the recovery-site QEMU host (the cloud-applier worker's machine). */
export interface MaterializeSettings {
  format: 'qcow2' | 'raw';
}

export const AZURE_DISK_TYPES = ['Standard_LRS', 'Premium_LRS', 'StandardSSD_LRS'] as const;
export type AzureDiskType = (typeof AZURE_DISK_TYPES)[number];

/** Where a drill or failover of a machine lands: Azure Resource Manager (per machine). */
export interface AzureTargetSettings {
  resourceGroup: string;
  /** Azure region; default: config azure.location. */
  location?: string;
  vmSize: string;
  osDiskType: AzureDiskType;
  /** The production subnet (resource id): failovers land here. */
  subnetId: string;
  /** The isolated subnet drills land in; default: config azure.drillSubnetId. Never the production one unless drillOnProductionSubnet. */
  drillSubnetId?: string;
  /** Only a recovery plan that says so puts a drill on the production subnet. */
  drillOnProductionSubnet?: boolean;
  /** The machine's network at the primary site, as recovery plans name it in their network mappings. */
  sourceNetwork?: string;
  /** Static private IP of the NIC (failovers; drills take a dynamic one unless their subnet is given with it). */
  privateIp?: string;
}

/** Per-machine recovery settings (vault: recovery-settings/<machine>.json). */
export interface RecoverySettings {
  machine: string;
  bootCheck?: BootCheck;
  materialize?: MaterializeSettings;
  /**
   * local (default): disks in osr-failover, optionally materialized; azure: managed disks, NIC and
   * VM; libvirt: a domain defined on a libvirt host from the protected domain's own definition.
   */
  target?: 'local' | 'azure' | 'libvirt';
  azure?: AzureTargetSettings;
  libvirt?: LibvirtTargetSettings;
}

/** The concrete Azure placement of one recovery, resolved by the control plane at start. */
export interface AzurePlacement {
  resourceGroup: string;
  location: string;
  vmSize: string;
  osDiskType: AzureDiskType;
  subnetId: string;
  privateIp?: string;
  osType: 'Linux' | 'Windows';
  hyperVGeneration: 'V1' | 'V2';
}

/** What a recovery made in Azure (all tagged osr-machine, osr-job, osr-kind). */
export interface AzureResources {
  resourceGroup: string;
  disks: { diskId: string; name: string; id: string; sourceUri: string }[];
  nic?: { name: string; id: string; privateIp?: string };
  vm?: { name: string; id: string; size: string };
}

export interface RecoveredDisk {
  diskId: string;
  /** Page blob in osr-failover: `test-<machine>-<job>/<disk>` or `<machine>-<job>/<disk>`. */
  blob: string;
  sizeBytes: number;
  /** How the image got there: a server-side copy of the snapshot (Copy Blob). */
  copy: 'server';
}

export interface BootCheckResult {
  ok: boolean;
  /** What failed, when not ok. */
  reason?: string;
  commandExitCode?: number | null;
  probeAttempts: number;
  durationMs: number;
  /** Tail of the command's and probe's output. */
  output: string;
}

/** Recovered disks on the recovery-site host, served by a qemu-storage-daemon (not for the libvirt target). */
export interface MaterializedMachine {
  dir: string;
  format: MaterializeSettings['format'];
  files: { diskId: string; path: string }[];
  /** The daemon's: absent when a libvirt domain opens the images itself. */
  qmpSocket?: string;
  nbdSocket?: string;
  pid?: number;
}

/** The recovered machine (vault: recovered/<machine>/<job>.json). */
export interface RecoveredMachine {
  machine: string;
  job: string;
  kind: RecoveryKind;
  point: Pick<RecoveryPoint, 'id' | 'instant' | 'kind'>;
  disks: RecoveredDisk[];
  createdAt: string;
  materialized?: MaterializedMachine;
  bootCheck?: BootCheckResult;
  /** The azure target: the managed disks, NIC and VM made (cleanup removes exactly these, by tag). */
  azure?: AzureResources;
  /** The libvirt target: the domain (and a drill's network) made on the recovery host, found by tag. */
  libvirt?: LibvirtResources;
  /** Failovers: set by commit, with what reprotect needs. */
  committed?: CommitRecord;
}

/** What reprotect starts from after a commit. */
export interface CommitRecord {
  at: string;
  /** The replica page blobs and recovery points that were kept (osr-replica/<machine>/<disk>). */
  replicaBlobs: string[];
  keptPoints: number;
  /** The last point forward replication published. */
  lastPoint?: Pick<RecoveryPoint, 'id' | 'instant' | 'kind'>;
}

/** The lock document: which failover job holds the machine. */
export interface FailoverLock {
  machine: string;
  job: string;
  workflowId: string;
  state: 'running' | 'committed';
  at: string;
}

/** Vault document names of recovery. */
export const recoveryDocs = {
  settings: (machine: string) => `recovery-settings/${vaultSegment('machine name', machine)}.json`,
  recovered: (machine: string, job: string) =>
    `recovered/${vaultSegment('machine name', machine)}/${vaultSegment('job id', job)}.json`,
  /** At most one failover per machine: created only if absent (ETag), removed when it ends uncommitted. */
  failoverLock: (machine: string) => `failover-locks/${vaultSegment('machine name', machine)}.json`,
};

/** Folder of a recovered machine's disks in osr-failover. */
export function recoveredPrefix(kind: RecoveryKind, machine: string, job: string): string {
  return kind === 'drill' ? `test-${machine}-${job}` : `${machine}-${job}`;
}
