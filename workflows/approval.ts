// approvalRequest: a request that needs a second person waits for a decision (shared/contracts/
// approval.ts). The workflow holds the state and refuses a decision by the requester or a second
// decision; running the approved request is the approver's operation (operations/approval-run.ts),
// which reports back with `done`, so the request runs with the approver's audit entry.
import { condition, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import {
  approvalDoneSignal,
  approvalStatusQuery,
  decideUpdate,
  type ApprovalRequest,
  type ApprovalState,
  type ApprovalStatus,
} from '../shared/contracts/approval';
import { OSR_STATE } from '../shared/search-attributes';

/** How long an approved request may wait for its approver to report it ran. */
const RUN_WAIT_MS = 24 * 3600 * 1000;

export async function approvalRequest(request: ApprovalRequest): Promise<ApprovalStatus> {
  const status: ApprovalStatus = { id: workflowInfo().workflowId, request, state: 'awaiting-approval' };
  const moveTo = (state: ApprovalState) => {
    status.state = state;
    upsertSearchAttributes({ [OSR_STATE.name]: [state] });
  };
  setHandler(approvalStatusQuery, () => status);
  setHandler(
    decideUpdate,
    (input) => {
      status.decidedBy = input.by;
      status.decidedAt = new Date().toISOString();
      if (input.note) status.note = input.note;
      moveTo(input.approve ? 'approved' : 'rejected');
      return status;
    },
    {
      validator: (input) => {
        if (status.state !== 'awaiting-approval')
          throw new Error(
            `this request is ${status.state}${status.decidedBy ? ` (by ${status.decidedBy})` : ''}`,
          );
        if (input.by === request.requestedBy)
          throw new Error(
            `${input.by} asked for this ${request.kind} of ${request.target}; another identity with the operator or admin role must approve or reject it`,
          );
      },
    },
  );
  setHandler(approvalDoneSignal, (done) => {
    if (status.state !== 'approved') return;
    if (done.job) status.job = done.job;
    if (done.error) status.error = done.error;
    moveTo('done');
  });
  const decided = await condition(
    () => status.state !== 'awaiting-approval',
    Math.max(0, Date.parse(request.expiresAt) - Date.now()),
  );
  if (!decided) moveTo('expired');
  if (status.state === 'approved') await condition(() => status.state === 'done', RUN_WAIT_MS);
  return status;
}
