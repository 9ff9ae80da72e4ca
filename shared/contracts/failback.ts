// The public face of reprotect, failback and re-enable: inputs, statuses, queries, updates and
// workflow ids. Pure definitions, shared by the workflows, the operations (CLI, HTTP API) and tests.
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { FailbackTarget, ReverseDiskStats } from '../failback-types';
import type { PlanAction } from '../plan-types';
import type { ProtectedMachine, TransferMode } from '../replication-types';
import type { RecoveryStep } from './failover';
import type { ActionStatus } from './recovery-plan';

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

export interface ReverseProgress {
  diskId: string;
  mode: TransferMode;
  segmentsDone: number;
  segmentsTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

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

export interface ReenableInput {
  job: string;
  machine: string;
  /** The machine's (primary) site: its master target forgets the reverse direction's state. */
  site: string;
  failoverJob: string;
}

export const failbackStatusQuery = defineQuery<FailbackStatus>('status');

export function reprotectWorkflowId(machine: string): string {
  return `reprotect/${machine}`;
}
export function failbackWorkflowId(machine: string, job: string): string {
  return `failback/${machine}/${job}`;
}
export function reenableWorkflowId(machine: string, job: string): string {
  return `reenable/${machine}/${job}`;
}

export type FailbackStage = 'reprotect' | 'failback' | 'reenable';

/** One machine of a plan stage: its single-machine workflow, prepared and validated by the operation. */
export type PlanStageMachine =
  | { stage: 'reprotect'; workflowId: string; input: ReprotectInput }
  | { stage: 'failback'; workflowId: string; input: FailbackInput }
  | { stage: 'reenable'; workflowId: string; input: ReenableInput };

export interface FailbackPlanInput {
  job: string;
  plan: string;
  stage: FailbackStage;
  /** The plan's groups; `pre`/`post` actions only for the failback stage (it brings machines up). */
  groups: Array<{ name: string; machines: string[]; pre?: PlanAction[]; post?: PlanAction[] }>;
  machines: Record<string, PlanStageMachine>;
}

export interface FailbackPlanStatus {
  job: string;
  plan: string;
  stage: FailbackStage;
  state: 'running' | 'done' | 'failed';
  groups: Array<{
    name: string;
    state: 'pending' | 'running' | 'done' | 'failed' | 'skipped';
    actions?: ActionStatus[];
    machines: Array<{ machine: string; workflowId: string; state: string; detail?: string }>;
  }>;
  error?: string;
}

export const failbackPlanStatusQuery = defineQuery<FailbackPlanStatus>('status');

export function failbackPlanWorkflowId(plan: string, stage: FailbackStage, job: string): string {
  return `plan/${plan}/${stage}/${job}`;
}
