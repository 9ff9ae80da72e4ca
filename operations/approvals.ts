// Four eyes on what cannot be undone: a plan's failover, or a commit, waits for another identity's
// approval when the plan asks for it (requireApproval) or approvals.required is set. The request
// becomes an approvalRequest workflow (shared/contracts/approval.ts); `gate` is called by those
// operations, and lets them through only while an approved request is being run
// (operations/approval-run.ts).
import { AsyncLocalStorage } from 'node:async_hooks';
import { WorkflowIdConflictPolicy } from '@temporalio/common';
import {
  approvalStatusQuery,
  approvalWorkflowId,
  type ApprovalKind,
  type ApprovalRequest,
  type ApprovalStatus,
} from '../shared/contracts/approval';
import { jobIdAt } from '../shared/contracts/recovery-job';
import { OSR_JOB_KIND, OSR_MACHINE, OSR_PLAN, OSR_STATE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { audited, currentActor } from './audit';
import { jobSummary, type ControlContext } from './context';

/**
 * Thrown instead of running: the request now waits for approval. Thrown, not returned, so that no
 * caller can take a waiting commit for a done one; the API answers it 202, the CLI exit code 6.
 */
export class ApprovalPendingError extends Error {
  constructor(readonly approval: ApprovalStatus) {
    super(
      `${approval.request.kind} of ${approval.request.target} waits for another identity's approval: osr approve ${approval.id} (or reject it; it expires ${approval.request.expiresAt})`,
    );
    this.name = 'ApprovalPendingError';
  }
}

const approvedRun = new AsyncLocalStorage<string>();

/** Runs `fn` as the approved request `id` (the gate lets it through). */
export function runApproved<T>(id: string, fn: () => Promise<T>): Promise<T> {
  return approvedRun.run(id, fn);
}

/** Returns when the operation may go on (no approval needed, or this is the approved request running). */
export async function gate(
  ctx: ControlContext,
  kind: ApprovalKind,
  target: string,
  options: { planRequires?: boolean; point?: string; planned?: boolean } = {},
): Promise<void> {
  if (approvedRun.getStore() !== undefined) return;
  if (!ctx.config.approvals.required && !options.planRequires) return;
  const approval = await requestApproval(ctx, {
    kind,
    target,
    options:
      options.point !== undefined || options.planned
        ? { point: options.point, planned: options.planned }
        : undefined,
  });
  throw new ApprovalPendingError(approval);
}

const requestApproval = audited(
  'approval.request',
  (ctx: ControlContext, input: Pick<ApprovalRequest, 'kind' | 'target' | 'options'>) =>
    startRequest(ctx, input),
  (_ctx, input) => ({ target: input.target, details: { kind: input.kind, ...input.options } }),
);

async function startRequest(
  ctx: ControlContext,
  input: Pick<ApprovalRequest, 'kind' | 'target' | 'options'>,
): Promise<ApprovalStatus> {
  const now = new Date();
  const request: ApprovalRequest = {
    ...input,
    requestedBy: currentActor().user,
    requestedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + ctx.config.approvals.expireSeconds * 1000).toISOString(),
  };
  const workflowId = approvalWorkflowId(input.kind, input.target, jobIdAt(now));
  const client = await ctx.client();
  await client.workflow.start('approvalRequest', {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId,
    args: [request],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    typedSearchAttributes: [
      { key: OSR_JOB_KIND, value: 'approval' },
      { key: OSR_STATE, value: 'awaiting-approval' },
      input.kind === 'machine-commit'
        ? { key: OSR_MACHINE, value: input.target }
        : { key: OSR_PLAN, value: input.target },
    ],
    ...jobSummary(`${input.kind} of ${input.target}, asked by ${request.requestedBy}: awaiting approval`),
  });
  return { id: workflowId, request, state: 'awaiting-approval' };
}

/** Requests waiting for a decision (newest first). */
export async function listApprovals(ctx: ControlContext): Promise<ApprovalStatus[]> {
  const client = await ctx.client();
  const out: ApprovalStatus[] = [];
  for await (const wf of client.workflow.list({
    query: `ExecutionStatus = 'Running' AND OsrJobKind = 'approval'`,
  })) {
    const status = await client.workflow
      .getHandle(wf.workflowId)
      .query(approvalStatusQuery)
      .catch(() => undefined);
    if (status) out.push(status);
    if (out.length >= 200) break;
  }
  return out.sort((a, b) => b.request.requestedAt.localeCompare(a.request.requestedAt));
}
