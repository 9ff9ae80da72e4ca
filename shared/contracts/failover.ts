// The public face of the recovery workflows (testFailover, cleanupTestFailover, failover): inputs,
// status, the status query and the failover's updates. Pure definitions, shared by the workflows,
// the operations (CLI, HTTP API) and the tests.
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type {
  BootCheckResult,
  CommitRecord,
  MaterializedMachine,
  RecoveredDisk,
  RecoverySettings,
} from '../recovery-types';
import type { ProtectedMachine, RecoveryPoint } from '../replication-types';

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
  committed?: CommitRecord;
  /** Why the job failed, when it did. */
  error?: string;
  steps: RecoveryStep[];
}

export interface TestFailoverInput {
  job: string;
  machine: ProtectedMachine;
  point: RecoveryPoint;
  settings?: RecoverySettings;
}

export interface CleanupTestFailoverInput {
  job: string;
  machine: string;
  /** The drill's job whose disks, local copies and record are removed. */
  drillJob: string;
}

export interface FailoverInput {
  job: string;
  machine: ProtectedMachine;
  /** Planned: stop the source's writes, cut a final point, fail over from it (no data loss). */
  planned: boolean;
  /** Unplanned: the point to fail over to (resolved by the operation). Ignored when planned. */
  point?: RecoveryPoint;
  settings?: RecoverySettings;
}

export const recoveryStatusQuery = defineQuery<RecoveryStatus>('status');
/** Ends forward replication (keeping replica and points) and completes the failover. */
export const commitUpdate = defineUpdate<RecoveryStatus>('commit');
/** Rebuilds the failed-over disks from another point (resolved by the caller). */
export const changeRecoveryPointUpdate = defineUpdate<RecoveryStatus, [{ point: RecoveryPoint }]>(
  'changeRecoveryPoint',
);

/** Job ids are the UTC time of the request, compact: sortable and usable in blob names. */
export function jobIdAt(date: Date): string {
  return date.toISOString().replace(/[-:.]/g, '');
}

export function drillWorkflowId(machine: string, job: string): string {
  return `drill/${machine}/${job}`;
}
export function cleanupWorkflowId(machine: string, job: string): string {
  return `drill-cleanup/${machine}/${job}`;
}
export function failoverWorkflowId(machine: string, job: string): string {
  return `failover/${machine}/${job}`;
}
