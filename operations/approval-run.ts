// Deciding a request that waits for approval (operations/approvals.ts): the workflow refuses the
// requester and a second decision; an approval then runs the request at once, as the approver
// (its own audit entry, beside approval.request naming who asked and approval.approve who
// approved), and reports the job it started, or why it could not run, back to the workflow.
import type { WorkflowHandle } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import {
  approvalDoneSignal,
  approvalStatusQuery,
  decideUpdate,
  type ApprovalRequest,
  type ApprovalStatus,
} from '../shared/contracts/approval';
import { checkName } from '../shared/names';
import { runApproved } from './approvals';
import { audited, currentActor } from './audit';
import { OperationError, type ControlContext } from './context';
import { commitFailover } from './failover';
import { commitPlan, startPlan } from './plans';

export const approveRequest = audited(
  'approval.approve',
  (ctx: ControlContext, id: string, note?: string) => decide(ctx, id, true, note),
  (_ctx, id, note?) => ({ target: id, details: { note } }),
);

export const rejectRequest = audited(
  'approval.reject',
  (ctx: ControlContext, id: string, note?: string) => decide(ctx, id, false, note),
  (_ctx, id, note?) => ({ target: id, details: { note } }),
);

async function decide(
  ctx: ControlContext,
  id: string,
  approve: boolean,
  note?: string,
): Promise<ApprovalStatus> {
  checkName('job', id);
  if (!id.startsWith('approval/'))
    throw new OperationError(
      `${id} is not an approval request; \`osr approvals\` lists them (approval/…)`,
      'invalid',
    );
  const handle = (await ctx.client()).workflow.getHandle(id);
  let status: ApprovalStatus;
  try {
    status = await handle.executeUpdate(decideUpdate, { args: [{ by: currentActor().user, approve, note }] });
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw await ended(handle, id);
    if ((err as Error).name === 'WorkflowUpdateFailedError') {
      const cause = (err as { cause?: Error }).cause;
      throw new OperationError(cause?.message ?? (err as Error).message, 'conflict');
    }
    throw err;
  }
  if (!approve) return status;
  let job: string | undefined;
  let error: string | undefined;
  try {
    job = await runApproved(id, () => run(ctx, status.request));
  } catch (err) {
    error = (err as Error).message;
  }
  await handle.signal(approvalDoneSignal, { job, error });
  return { ...status, state: 'done', ...(job ? { job } : {}), ...(error ? { error } : {}) };
}

/** Temporal answers an update to an ended workflow as "not found": say how it ended instead. */
async function ended(handle: WorkflowHandle, id: string): Promise<OperationError> {
  const status = await handle.query(approvalStatusQuery).catch(() => undefined);
  if (!status)
    return new OperationError(`no approval request ${id}; \`osr approvals\` lists them`, 'not-found');
  const by = status.decidedBy ? ` by ${status.decidedBy}` : '';
  return new OperationError(`approval request ${id} has ended: ${status.state}${by}`, 'conflict');
}

/** Runs the approved request; the job it started (a plan failover), if any. */
async function run(ctx: ControlContext, request: ApprovalRequest): Promise<string | undefined> {
  switch (request.kind) {
    case 'plan-failover':
      return (await startPlan(ctx, request.target, 'failover', { ...request.options, wait: false })).ref
        .workflowId;
    case 'plan-commit':
      await commitPlan(ctx, request.target);
      return undefined;
    case 'machine-commit':
      await commitFailover(ctx, request.target);
      return undefined;
  }
}
