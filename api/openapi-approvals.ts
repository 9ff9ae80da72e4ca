// The OpenAPI description of requests waiting for approval (api/approval-routes.ts), and the 202
// that a plan failover or a commit answers when it must wait for one. Merged into api/openapi.ts.
import {
  body,
  closedObject,
  common,
  error,
  json,
  listOf,
  object,
  ref,
  type Operation,
} from './openapi-common';

const approvalId = {
  name: 'id',
  in: 'path' as const,
  required: true,
  description: 'the approval request id: approval/<kind>/<target>/<job>, percent-encoded ("/" as %2F)',
  schema: { type: 'string' },
};

const decide = (operationId: string, summary: string): Operation => ({
  operationId,
  summary,
  tags: ['approvals'],
  parameters: [approvalId],
  requestBody: body(closedObject({ note: { type: 'string' } }), false),
  responses: {
    '200': {
      description: 'the request after the decision (approved: run, state done)',
      ...json(ref('Approval')),
    },
    ...common,
    '404': error('no such approval request'),
    '409': error('asked by this identity, already decided, or expired'),
  },
});

export const approvalPaths = {
  '/v1/approvals': {
    get: {
      operationId: 'listApprovals',
      summary: 'failovers and commits waiting for a second identity (running approval requests)',
      tags: ['approvals'],
      responses: { '200': { description: 'requests', ...listOf('approvals', 'Approval') }, ...common },
    },
  },
  '/v1/approvals/{id}/approve': {
    post: decide(
      'approveRequest',
      'approve a request another identity made; it runs at once, as the approver',
    ),
  },
  '/v1/approvals/{id}/reject': { post: decide('rejectRequest', 'reject a request another identity made') },
};

/** What a plan failover or a commit answers when it waits for approval. */
export const awaitingApproval = {
  '202': {
    description:
      "waiting for another identity's approval (requireApproval or approvals.required): follow the Location; approve with /v1/approvals/{id}/approve",
    ...json(
      object({ approval: ref('Approval'), workflowId: 'string', location: 'string', message: 'string' }),
    ),
  },
};

export const approvalSchemas = {
  Approval: object({
    id: 'string',
    state: { type: 'string', enum: ['awaiting-approval', 'approved', 'rejected', 'expired', 'done'] },
    request: object({
      kind: { type: 'string', enum: ['plan-failover', 'plan-commit', 'machine-commit'] },
      target: 'string',
      options: { type: 'object' },
      requestedBy: 'string',
      requestedAt: 'date-time',
      expiresAt: 'date-time',
    }),
    decidedBy: 'string',
    decidedAt: 'date-time',
    note: 'string',
    job: 'string',
    error: 'string',
  }),
};
