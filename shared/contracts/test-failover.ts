// The public face of the drill workflows (testFailover, cleanupTestFailover): inputs and workflow
// ids; their status and query are every recovery job's (recovery-job.ts). Pure definitions.
import type { RecoverySettings } from '../recovery-types';
import type { ProtectedMachine, RecoveryPoint } from '../replication-types';

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
  /** The drill went into Azure: its resources there are removed too (by tag). */
  azure?: boolean;
  /** The drill went into libvirt: its domain and network there are removed too (by tag). */
  libvirt?: boolean;
}

export function drillWorkflowId(machine: string, job: string): string {
  return `drill/${machine}/${job}`;
}
export function cleanupWorkflowId(machine: string, job: string): string {
  return `drill-cleanup/${machine}/${job}`;
}
