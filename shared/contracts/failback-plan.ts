// The public face of the failbackPlan workflow (one failback stage of a recovery plan, machine by
// machine as child workflows): input, status, its query, workflow id. Pure definitions.
import { defineQuery } from '@temporalio/workflow';
import type { PlanAction } from '../plan-types';
import type { FailbackInput } from './failback';
import type { ReenableInput } from './reenable';
import type { ReprotectInput } from './reprotect';
import type { ActionStatus } from './recovery-plan';

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
