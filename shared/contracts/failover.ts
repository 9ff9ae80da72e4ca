// The public face of the failover workflow: input, its updates (commit, changeRecoveryPoint),
// workflow id; its status and query are every recovery job's (recovery-job.ts). Pure definitions.
import { defineUpdate } from '@temporalio/workflow';
import type { RecoverySettings } from '../recovery-types';
import type { ProtectedMachine, RecoveryPoint } from '../replication-types';
import type { RecoveryStatus } from './recovery-job';

export interface FailoverInput {
  job: string;
  machine: ProtectedMachine;
  /** Planned: stop the source's writes, cut a final point, fail over from it (no data loss). */
  planned: boolean;
  /** Unplanned: the point to fail over to (resolved by the operation). Ignored when planned. */
  point?: RecoveryPoint;
  settings?: RecoverySettings;
}

/** Ends forward replication (keeping replica and points) and completes the failover. */
export const commitUpdate = defineUpdate<RecoveryStatus>('commit');
/** Rebuilds the failed-over disks from another point (resolved by the caller). */
export const changeRecoveryPointUpdate = defineUpdate<RecoveryStatus, [{ point: RecoveryPoint }]>(
  'changeRecoveryPoint',
);

export function failoverWorkflowId(machine: string, job: string): string {
  return `failover/${machine}/${job}`;
}
