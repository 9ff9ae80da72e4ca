// Types of recovery (drills and failovers) that cross the workflow/activity boundary and live in
// the vault. Pure: no I/O, safe to import from workflow code.
import { vaultSegment } from './names';
import type { RecoveryPoint } from './replication-types';

/** drill: a test failover, isolated (`test-` prefix); failover: the machine for real. */
export type RecoveryKind = 'drill' | 'failover';

/** A boot check: `command` starts the recovered machine, `probe` tells whether it came up. */
export interface BootCheck {
  /**
   * Run by the cloud-applier worker with OSR_RECOVERED_DISKS, OSR_MACHINE, OSR_POINT_ID (and
   * OSR_RECOVERED_BLOBS) in its environment. It may keep running (a VM); it is stopped after the probe.
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

/** Per-machine recovery settings (vault: recovery-settings/<machine>.json). */
export interface RecoverySettings {
  machine: string;
  bootCheck?: BootCheck;
  materialize?: MaterializeSettings;
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

/** Recovered disks served by a qemu-storage-daemon on the recovery-site host. */
export interface MaterializedMachine {
  dir: string;
  format: MaterializeSettings['format'];
  files: { diskId: string; path: string }[];
  qmpSocket: string;
  nbdSocket: string;
  pid: number;
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
