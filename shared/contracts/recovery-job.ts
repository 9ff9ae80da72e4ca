// What every single-machine recovery job (drill, drill cleanup, failover) answers: its status with
// timed steps and the status query; and how job ids are made. Pure definitions.
import { defineQuery } from '@temporalio/workflow';
import type { LibvirtResources } from '../libvirt-target';
import type {
  AzureResources,
  BootCheckResult,
  CommitRecord,
  MaterializedMachine,
  RecoveredDisk,
} from '../recovery-types';
import type { RecoveryPoint } from '../replication-types';

export type RecoveryJobKind = 'drill' | 'drill-cleanup' | 'failover';

export type RecoveryJobState =
  | 'running'
  /** Drill: disks ready (booted where checked); waiting for nothing: clean up with cleanupTestFailover. */
  | 'ready'
  | 'cleaned-up'
  /** Failover: disks ready, waiting for commit or changeRecoveryPoint. */
  | 'failed-over'
  | 'committed'
  | 'failed';

export interface RecoveryStep {
  name: string;
  state: 'running' | 'done' | 'failed' | 'skipped';
  startedAt: string;
  endedAt?: string;
  detail?: string;
}

export interface RecoveryStatus {
  job: string;
  kind: RecoveryJobKind;
  machine: string;
  state: RecoveryJobState;
  planned?: boolean;
  point?: Pick<RecoveryPoint, 'id' | 'instant' | 'kind'>;
  disks: RecoveredDisk[];
  materialized?: MaterializedMachine;
  bootCheck?: BootCheckResult;
  /** The azure target: managed disks, NIC and VM made so far. */
  azure?: AzureResources;
  /** The libvirt target: the domain (and a drill's network) made on the recovery host, and its boot probe. */
  libvirt?: LibvirtResources;
  committed?: CommitRecord;
  /** Why the job failed, when it did. */
  error?: string;
  /** A drill that was cleaned up since (set by `osr failover status`, not by the workflow). */
  cleanedUp?: { workflowId: string; at?: string };
  steps: RecoveryStep[];
}

export const recoveryStatusQuery = defineQuery<RecoveryStatus>('status');

/** Job ids are the UTC time of the request, compact: sortable and usable in blob names. */
export function jobIdAt(date: Date): string {
  return date.toISOString().replace(/[-:.]/g, '');
}
