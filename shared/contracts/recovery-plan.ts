// The public face of the recoveryPlan workflow: input, status, the status query and the approve
// and commit updates. Pure definitions, shared by the workflow, the operations and the tests.
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { RecoverySettings } from '../recovery-types';
import type { PlanAction, RecoveryPlan } from '../plan-types';
import type { ProtectedMachine, RecoveryPoint } from '../replication-types';

export type PlanOperation = 'test-failover' | 'cleanup' | 'failover';

export type PlanState = 'running' | 'ready' | 'cleaned-up' | 'failed-over' | 'committed' | 'failed';

export type ItemState = 'pending' | 'running' | 'waiting' | 'done' | 'failed' | 'skipped' | 'timed-out';

export interface PlanMachineInput {
  machine: ProtectedMachine;
  /** Drill and unplanned failover: the chosen point (resolved by the operation). */
  point?: RecoveryPoint;
  settings?: RecoverySettings;
  /** Cleanup: the drill job whose disks go. */
  drillJob?: string;
}

export interface RecoveryPlanInput {
  job: string;
  operation: PlanOperation;
  plan: RecoveryPlan;
  /** By machine name. */
  machines: Record<string, PlanMachineInput>;
}

export interface ActionStatus {
  id: string;
  kind: PlanAction['kind'];
  when: 'pre' | 'post';
  state: ItemState;
  startedAt?: string;
  endedAt?: string;
  approvedBy?: string;
  detail?: string;
}

export interface MachineStatus {
  machine: string;
  workflowId: string;
  pointId?: string;
  state: ItemState;
  startedAt?: string;
  endedAt?: string;
  detail?: string;
}

export interface GroupStatus {
  name: string;
  state: ItemState;
  startedAt?: string;
  endedAt?: string;
  actions: ActionStatus[];
  machines: MachineStatus[];
}

export interface PlanStatus {
  job: string;
  plan: string;
  operation: PlanOperation;
  state: PlanState;
  startedAt: string;
  endedAt?: string;
  error?: string;
  groups: GroupStatus[];
}

export interface ApproveInput {
  action: string;
  by: string;
}

export const planStatusQuery = defineQuery<PlanStatus>('status');
export const approveUpdate = defineUpdate<PlanStatus, [ApproveInput]>('approve');
/** Failover plans: commits every machine's failover and completes the plan. */
export const planCommitUpdate = defineUpdate<PlanStatus>('commit');

export function planWorkflowId(plan: string, operation: PlanOperation, job: string): string {
  return `plan/${plan}/${operation}/${job}`;
}
