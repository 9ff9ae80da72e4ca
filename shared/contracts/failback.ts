// The public face of the failback workflow (the planned failover back to the primary site): input,
// the job status (re-enable reports the same shape), its query, workflow id. Pure definitions, shared
// by the workflows, the operations (CLI, HTTP API) and tests.
import { defineQuery } from '@temporalio/workflow';
import type { FailbackTarget } from '../failback-types';
import type { ProtectedMachine } from '../replication-types';
import type { RecoveryStep } from './recovery-job';
import type { FinalCycleResult } from './reprotect';

export type FailbackJobState = 'running' | 'done' | 'failed';

/** A step of a failback job: the same shape as a recovery job's. */
export type FailbackStep = RecoveryStep;

export interface FailbackStatus {
  job: string;
  kind: 'failback' | 'reenable';
  machine: string;
  state: FailbackJobState;
  steps: FailbackStep[];
  /** failback: the final cycle; reenable: what forward replication's resync sent. */
  finalCycle?: FinalCycleResult;
  reenable?: { bytesSent: number; bytesChanged: number; cycles: number; diskBytes: number };
  error?: string;
}

export interface FailbackInput {
  job: string;
  machine: ProtectedMachine;
  failoverJob: string;
  reprotectWorkflowId: string;
  source: ProtectedMachine;
  target: FailbackTarget;
}

export const failbackStatusQuery = defineQuery<FailbackStatus>('status');

export function failbackWorkflowId(machine: string, job: string): string {
  return `failback/${machine}/${job}`;
}
