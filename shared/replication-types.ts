// Types that cross the workflow/activity boundary during replication. Pure: no I/O, safe to import
// from workflow code. Only ids, extents, cursors and small summaries travel in payloads, never data.
import type { AzureReadiness } from './azure-readiness';

/** A replication policy: how often to cut points and how long to keep them. */
export interface ReplicationPolicy {
  name: string;
  /** RPO alert threshold; replication does not slow down or speed up because of it. */
  rpoThresholdSeconds: number;
  /** Crash-consistent recovery point frequency. */
  crashPointSeconds: number;
  /** App-consistent point frequency; 0 turns app-consistent points off. */
  appPointSeconds: number;
  /** How long points are kept at all. */
  retentionHours: number;
  /** Within this many recent minutes every point is kept; older ones are thinned to one an hour. */
  keepAllMinutes: number;
  /** Upload rate of all its machines together on one process server, bits per second; absent or 0: no limit. */
  bandwidthLimitBitsPerSecond?: number;
}

/** How the process server reaches a machine's disks. */
export interface QemuSource {
  type: 'qemu';
  /** QMP monitor of the VM or qemu-storage-daemon. */
  qmpSocket: string;
  /** The process's running NBD server socket, when it has one (qemu-storage-daemon --nbd-server). */
  nbdSocket?: string;
  /** Block node names to protect; all top-level disks when omitted. */
  disks?: string[];
}

/** A machine with the Mobility agent inside (`osr protect --agent`): tracking and points by the agent. */
export interface AgentSource {
  type: 'agent';
  /** The agent's id (ag-…), as `osr agent list` shows it. */
  agentId: string;
  /** Kernel names of the disks to protect (vdb, sdb …); all writable disks when omitted. */
  disks?: string[];
}

/** A domain of a libvirt host (`osr host add --libvirt`): changes through libvirt's checkpoints and backups. */
export interface LibvirtSource {
  type: 'libvirt';
  /** The host's name in the vault (hosts/<name>.json). */
  host: string;
  /** Its libvirt URI, as the host was added (kept here: a cycle needs no vault read). */
  uri: string;
  domain: string;
  /** Target devs (vda, sdb …) to protect; all writable disks when omitted. */
  disks?: string[];
}

/** Commands run around an app-consistent point (quiesce the application, then thaw). */
export interface QuiesceHooks {
  /** Host-side socket of the VM's QEMU guest agent channel; used instead of pre/post when set. */
  guestAgentSocket?: string;
  pre?: string;
  post?: string;
  timeoutSeconds?: number;
}

export interface ProtectedMachine {
  name: string;
  site: string;
  /** The host it runs on (`osr host add`): its work goes to that host's process servers. */
  host?: string;
  source: QemuSource | LibvirtSource | AgentSource;
  policy: string;
  quiesce?: QuiesceHooks;
  /** What an Azure VM of it needs (recorded at protect; absent before: Linux, V1). */
  platform?: MachinePlatform;
  /** What the readiness check inside the guest found at protect (shared/azure-readiness.ts). */
  azureReadiness?: AzureReadiness;
  createdAt: string;
}

/** OS type and Hyper-V generation (V1: BIOS boot, QEMU's default; V2: UEFI) of a machine. */
export interface MachinePlatform {
  osType: 'Linux' | 'Windows';
  hyperVGeneration: 'V1' | 'V2';
}

export const DEFAULT_PLATFORM: MachinePlatform = { osType: 'Linux', hyperVGeneration: 'V1' };

export type PointKind = 'crash' | 'app';

export interface PointDisk {
  diskId: string;
  /** Replica page blob (container osr-replica). */
  blob: string;
  /** Blob snapshot id: the recovery point's image of this disk. */
  snapshot: string;
  sizeBytes: number;
}

/** A recovery point in the catalog (vault: points/<machine>/<id>.json). */
export interface RecoveryPoint {
  id: string;
  machine: string;
  cycle: number;
  /**
   * The instant the source disks were frozen: the point is the disks as they were then. On
   * Temporal's clock (shared/point-order.ts): the primary's own reading when it agrees, else
   * Temporal's time just after the freeze (never before it).
   */
  instant: string;
  /** The primary host's clock at the freeze ("source clock"), kept as read. Absent before point-order. */
  sourceInstant?: string;
  /**
   * Which protection of the machine cut the point (Temporal's time at its first ordered cycle):
   * points order by protection, then cycle. Absent before point-order.
   */
  protection?: string;
  kind: PointKind;
  tag?: string;
  disks: PointDisk[];
  createdAt: string;
}

/** One disk of a frozen point in time, as the process server left it exported. */
export interface FrozenDisk {
  diskId: string;
  sizeBytes: number;
  exportName: string;
  nbdSocket: string;
  /** The libvirt URI (over SSH) of the remote host nbdSocket is on; absent: this machine. */
  nbdSocketHost?: string;
  /** Dirty bitmap holding the changes since the previous point; absent when tracking was lost. */
  bitmap?: string;
  /** What this cycle sends for the disk. */
  mode: TransferMode;
  /** Frozen by this Mobility agent (its connection serves the reads); absent: NBD. */
  agentId?: string;
}

/**
 * full: every allocated block (new replica); delta: blocks in the dirty bitmap;
 * resync: blocks whose checksum differs from the replica's (tracking lost, or replica already there).
 */
export type TransferMode = 'full' | 'delta' | 'resync';

export interface FrozenPoint {
  pitId: string;
  machine: string;
  cycle: number;
  instant: string;
  disks: FrozenDisk[];
  /** Changes in the machine's disks found while freezing that the operator must see. */
  warnings: DiskChangeWarning[];
  /**
   * An agent machine's point-store alerts at the freeze (lib/agents/store-alerts.ts), so that the
   * workflow's health and its OsrHealth search attribute count them; absent for other sources and
   * in histories recorded before it.
   */
  storeAlerts?: StoreAlertNote[];
}

/** One of an agent's point-store alerts, as a freeze reports it. */
export interface StoreAlertNote {
  kind: 'agent-store-low' | 'agent-store-full';
  severity: 'warning' | 'critical';
  message: string;
  /** The agent's id. */
  subject: string;
}

/** A change in a machine's disks that a freeze found; the workflow raises an alert of this kind. */
export type DiskChangeKind = 'resync-needed' | 'disk-shrunk' | 'disk-vanished' | 'disk-added';

/**
 * One disk change, as data. (Histories recorded before this shape hold plain strings here: workflow
 * code reading recorded results must accept those too, see workflows/lib/disk-changes.ts.)
 */
export interface DiskChangeWarning {
  kind: DiskChangeKind;
  diskId: string;
  /** For the operator: what happened and what to do. */
  message: string;
}

/** What crossed the wire for one disk in one cycle. */
export interface TransferSummary {
  diskId: string;
  segments: number;
  /** Disk bytes covered by the cycle's extents. */
  rawBytes: number;
  /** Of those, bytes that were zero and sent as zero extents. */
  zeroBytes: number;
  /** Bytes uploaded (segments after compression and encryption), this attempt. */
  sentBytes: number;
  /** Segments this attempt skipped because an earlier attempt had uploaded them. */
  resumedSegments: number;
  /** Segments uploaded by this attempt. */
  uploadedSegments: number;
}

export interface ApplySummary {
  diskId: string;
  segments: number;
  appliedBytes: number;
  clearedBytes: number;
}
