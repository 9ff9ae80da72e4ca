// Requests waiting for a second person's approval (operations/approvals.ts): list, approve, reject.
// Who may decide is the access table's business (operator or admin); that it is not who asked is
// the workflow's.
import { listApprovals } from '../operations/approvals';
import { approveRequest, rejectRequest } from '../operations/approval-run';
import { onlyFields, optionalString } from './body';
import type { ApiResponse, Route } from './router';

const ok = (body: unknown): ApiResponse => ({ status: 200, body });

const decideRoute = (decision: 'approve' | 'reject'): Route => ({
  method: 'POST',
  path: `/v1/approvals/{id}/${decision}`,
  handler: async (req) => {
    const body = await req.body();
    onlyFields(body, ['note']);
    const note = optionalString(body, 'note', 'a non-empty text, or leave it out');
    const decide = decision === 'approve' ? approveRequest : rejectRequest;
    return ok(await decide(req.ctx, req.params.id as string, note));
  },
});

export const approvalRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/approvals',
    handler: async (req) => ok({ approvals: await listApprovals(req.ctx) }),
  },
  decideRoute('approve'),
  decideRoute('reject'),
];
