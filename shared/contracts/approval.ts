// The public face of the approvalRequest workflow (workflows/approval.ts): a failover of a plan or
// a commit that needs a second person's approval waits here, visible in status (query `status`),
// the OsrState search attribute (awaiting-approval, approved, rejected, expired, done) and the
// dashboard, until another identity with the operator or admin role approves it or rejects it, or
// it expires. The approver's `osr approve` (or API call) then runs the request and reports `done`.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';

export type ApprovalKind = 'plan-failover' | 'plan-commit' | 'machine-commit';
export type ApprovalState = 'awaiting-approval' | 'approved' | 'rejected' | 'expired' | 'done';

export interface ApprovalRequest {
  kind: ApprovalKind;
  /** The plan (plan-failover), plan job or plan (plan-commit), or machine (machine-commit). */
  target: string;
  /** plan-failover: what was asked. */
  options?: { point?: string; planned?: boolean };
  /** Who asked: the API identity or the OS user of the CLI. */
  requestedBy: string;
  requestedAt: string;
  expiresAt: string;
}

export interface ApprovalStatus {
  id: string;
  request: ApprovalRequest;
  state: ApprovalState;
  decidedBy?: string;
  decidedAt?: string;
  note?: string;
  /** done: the job the approved request started, or why it could not run. */
  job?: string;
  error?: string;
}

export interface DecideInput {
  /** Who decides: refused when it is who asked. */
  by: string;
  approve: boolean;
  note?: string;
}

export interface DoneInput {
  job?: string;
  error?: string;
}

export const approvalStatusQuery = defineQuery<ApprovalStatus>('status');
export const decideUpdate = defineUpdate<ApprovalStatus, [DecideInput]>('decide');
export const approvalDoneSignal = defineSignal<[DoneInput]>('done');

export const approvalWorkflowId = (kind: ApprovalKind, target: string, job: string) =>
  `approval/${kind}/${target}/${job}`;
