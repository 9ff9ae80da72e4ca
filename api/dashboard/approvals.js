// Failovers and commits waiting for a second identity's approval: who asked, when it expires,
// and Approve / Reject for an identity whose role may decide and who did not ask.
import { decideRequest } from './actions.js';
import { api } from './api.js';
import { badge, clock, h, replace } from './dom.js';
import { can, state } from './state.js';

export async function renderApprovals() {
  let approvals = [];
  try {
    approvals = (await api('GET', '/v1/approvals')).approvals || [];
  } catch {
    approvals = [];
  }
  if (!approvals.length)
    return replace('approvals', h('p', { class: 'empty' }, 'Nothing waits for approval.'));
  const mayDecide = can('POST /v1/approvals/{id}/approve');
  replace(
    'approvals',
    h(
      'ul',
      { class: 'jobs' },
      approvals.map((a) => {
        const own = state.me && a.request.requestedBy === state.me.name;
        return h(
          'li',
          { 'data-approval': a.id, 'data-state': a.state },
          badge(a.state, 'warn'),
          ` ${a.request.kind} of ${a.request.target}, asked by ${a.request.requestedBy} at ${clock(a.request.requestedAt)}; expires ${clock(a.request.expiresAt)} `,
          mayDecide &&
            !own &&
            h(
              'button',
              {
                type: 'button',
                class: 'primary',
                'data-action': 'approve-request',
                onclick: () => decideRequest(a, true),
              },
              'Approve',
            ),
          mayDecide &&
            !own &&
            h(
              'button',
              { type: 'button', 'data-action': 'reject-request', onclick: () => decideRequest(a, false) },
              'Reject',
            ),
          own ? h('span', { class: 'muted' }, '(yours: another identity must decide)') : null,
        );
      }),
    ),
  );
}
