// The recovery plans: groups, the state of the newest job, and the plan's buttons.
import { approve, commitPlan, planAction } from './actions.js';
import { api, jobPath } from './api.js';
import { badge, h, replace, stateTone } from './dom.js';
import { can } from './state.js';

export async function renderPlans() {
  let plans = [];
  try {
    plans = (await api('GET', '/v1/plans')).plans || [];
  } catch {
    return replace('plans', h('p', { class: 'empty' }, 'Recovery plans are not available from this server.'));
  }
  if (!plans.length)
    return replace('plans', h('p', { class: 'empty' }, 'No recovery plan. Create one with osr plan create.'));
  const cards = [];
  for (const plan of plans) {
    let jobs = [];
    try {
      jobs = (await api('GET', `/v1/plans/${encodeURIComponent(plan.name)}`)).jobs || [];
    } catch {
      jobs = [];
    }
    const latest = jobs[0];
    let status;
    if (latest) {
      try {
        status = (await api('GET', jobPath(latest.workflowId))).progress;
      } catch {
        status = undefined;
      }
    }
    const waiting = status
      ? status.groups.flatMap((g) =>
          g.actions.filter((a) => a.state === 'waiting').map((a) => ({ group: g.name, action: a })),
        )
      : [];
    const instructions = new Map(
      plan.groups.flatMap((g) =>
        [...(g.pre || []), ...(g.post || [])].map((a) => [a.id, a.instruction || a.command]),
      ),
    );
    cards.push(
      h(
        'article',
        { class: 'plan', 'data-plan': plan.name },
        h(
          'header',
          {},
          h('h3', {}, plan.name),
          latest
            ? badge(`${latest.operation}: ${status ? status.state : '…'}`, stateTone(status && status.state))
            : badge('never run', ''),
          h('span', { class: 'spacer' }),
          can('POST /v1/plans/{name}/test-failover') &&
            h(
              'button',
              {
                type: 'button',
                'data-action': 'plan-drill',
                onclick: () => planAction(plan.name, 'test-failover'),
              },
              'Drill',
            ),
          can('POST /v1/plans/{name}/failover') &&
            h(
              'button',
              {
                type: 'button',
                class: 'danger',
                'data-action': 'plan-failover',
                onclick: () => planAction(plan.name, 'failover'),
              },
              'Failover',
            ),
          latest &&
            latest.operation === 'failover' &&
            status &&
            status.state === 'failed-over' &&
            can('POST /v1/plan-jobs/{job}/commit')
            ? h(
                'button',
                {
                  type: 'button',
                  class: 'danger',
                  'data-action': 'plan-commit',
                  onclick: () => commitPlan(latest.job, plan.name),
                },
                'Commit',
              )
            : null,
        ),
        waiting.map(({ group, action }) =>
          h(
            'div',
            { class: 'waiting' },
            `Group ${group} waits for ${action.id}: ${instructions.get(action.id) || 'manual action'} `,
            can('POST /v1/plan-jobs/{job}/approve') &&
              h(
                'button',
                {
                  type: 'button',
                  class: 'primary',
                  'data-action': 'approve',
                  onclick: () => approve(latest.job, action.id, instructions.get(action.id)),
                },
                'Approve',
              ),
          ),
        ),
        h(
          'ol',
          {},
          plan.groups.map((g) => {
            const gs = status ? status.groups.find((x) => x.name === g.name) : undefined;
            return h(
              'li',
              {},
              h('strong', {}, g.name),
              `: ${g.machines.join(', ')} `,
              gs ? badge(gs.state, stateTone(gs.state)) : null,
            );
          }),
        ),
      ),
    );
  }
  replace('plans', cards);
}
