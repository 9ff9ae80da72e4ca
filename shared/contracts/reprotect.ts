// The public face of the reprotect workflow (reverse replication after a committed failover):
// input, status, its query and updates, workflow id. Pure definitions, shared by the workflow, the
// operations (CLI, HTTP API) and tests.
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { FailbackTarget, ReverseDiskStats } from '../failback-types';
import type { ProtectedMachine } from '../replication-types';
import type { SyncProgress } from './protect-machine';

export type ReprotectState =
  | 'preparing'
  /** The first cycle: diff resync against the original disks (or a full copy into new ones). */
  | 'resyncing'
  /** Reverse replication: a delta cycle every interval. */
  | 'protected'
  /** The failback's final cycle is running. */
  | 'final-cycle'
  /** The final cycle is applied: the original disks equal the recovery-site disks. */
  | 'synced'
  | 'stopped';

/** A reverse cycle's progress on one disk: the same figures as a protection cycle's. */
export type ReverseProgress = SyncProgress;

export interface ReprotectStatus {
  machine: string;
  job: string;
  failoverJob: string;
  state: ReprotectState;
  /** The failed-over machine in the recovery site, as the process server reads it. */
  source: ProtectedMachine;
  /** The original disks, as the master target writes them. */
  target?: FailbackTarget;
  /** Recovery-site node of each original disk id. */
  nodes: Record<string, string>;
  cycle: number;
  cycles: number;
  failedCycles: number;
  progress?: ReverseProgress[];
  disks: ReverseDiskStats[];
  /** The last cycle applied in full on the original disks: the master target's point. */
  lastApplied?: { cycle: number; instant: string };
  alerts: Array<{ at: string; message: string }>;
}

export interface ReprotectInput {
  job: string;
  /** The original machine (primary site), as registered. */
  machine: ProtectedMachine;
  failoverJob: string;
  source: ProtectedMachine;
  /** Recovery-site node of each original disk id (materialized disk i is node disk<i>). */
  nodes: Record<string, string>;
  intervalSeconds: number;
  /** Cycles per run before continueAsNew; tests lower it. */
  maxCyclesPerRun?: number;
  carried?: ReprotectStatus;
}

export interface FinalCycleResult {
  cycle: number;
  instant: string;
  disks: ReverseDiskStats[];
}

export const reprotectStatusQuery = defineQuery<ReprotectStatus>('status');
/** Failback: one last cycle (the writes in the recovery site are stopped), then reprotect ends. */
export const finalCycleUpdate = defineUpdate<FinalCycleResult>('finalCycle');
/** Gives reverse replication up: the master target's exports and journals go; nothing is brought up. */
export const stopReprotectUpdate = defineUpdate<ReprotectStatus>('stopReprotect');

export function reprotectWorkflowId(machine: string): string {
  return `reprotect/${machine}`;
}
