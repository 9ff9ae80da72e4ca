// Types of reprotect, failback and re-enable that cross the workflow/activity boundary and live in
// the vault. Pure: no I/O, safe to import from workflow code.
import { vaultSegment } from './names';

/** One original disk as the master target writes it: a writable NBD export on the primary site. */
export interface FailbackTargetDisk {
  /** The disk's id in the original machine (and in its replica). */
  diskId: string;
  /** Block node in the QEMU process serving it. */
  node: string;
  sizeBytes: number;
  /** The writable NBD export of the disk (absent: written through the machine's agent). */
  exportName?: string;
  nbdSocket?: string;
  /** Set: the disk is `node` inside the machine whose Mobility agent this is, written through it. */
  agentId?: string;
  /** false: a new empty disk (the original was gone), filled by a full copy. */
  existed: boolean;
}

export interface FailbackTarget {
  /** The QEMU process serving the original disks (absent: the machine's agent writes them). */
  qmpSocket?: string;
  nbdSocket?: string;
  disks: FailbackTargetDisk[];
  /** The original machine runs the Mobility agent, which writes its disks (agent/failback-target.ts). */
  agent?: { agentId: string };
  /** Set when the master target created new disks (and a storage daemon) in this folder. */
  createdDir?: string;
  /**
   * The original machine is this libvirt domain, shut off while a qemu-storage-daemon (its state
   * in `daemonDir`) serves its image files; failback stops the daemon and starts the domain.
   */
  libvirt?: { uri: string; domain: string; daemonDir: string };
}

/** What crossed the wire for one disk in reverse replication, summed over cycles. */
export interface ReverseDiskStats {
  diskId: string;
  /** Bytes uploaded by the recovery-site process server (compressed, encrypted segments). */
  sentBytes: number;
  /** Disk bytes the cycles covered (before zero detection and compression). */
  rawBytes: number;
  /** Of those, the bytes of the first cycle (the diff resync or the full copy). */
  resyncRawBytes: number;
  resyncSentBytes: number;
  resyncMode?: 'resync' | 'full';
}

/** Vault: failback/<machine>.json, the machine's place in the three stages. */
export interface FailbackRecord {
  machine: string;
  /** The committed failover it started from. */
  failoverJob: string;
  stage: 'reprotecting' | 'failed-back' | 'reenabled';
  reprotectWorkflowId?: string;
  failbackWorkflowId?: string;
  reenableWorkflowId?: string;
  /** Set when the original disks were gone and new ones were made. */
  newDisks?: { qmpSocket: string; nbdSocket: string; dir: string };
  at: string;
}

export const failbackDocs = {
  record: (machine: string) => `failback/${vaultSegment('machine name', machine)}.json`,
};

/** Name of the reverse direction's data in osr-cache (a dot never appears in machine names). */
export function reverseId(machine: string): string {
  return `${machine}.reverse`;
}

/** Name of the master target's undo journal in osr-cache. */
export function undoId(machine: string): string {
  return `${machine}.undo`;
}
