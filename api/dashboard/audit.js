// The recent operator actions, from the audit log.
/* global document */
import { badge, clock, h } from './dom.js';

export function renderAudit(entries) {
  const rows = entries.map((e) =>
    h(
      'tr',
      {},
      h('td', {}, clock(e.at)),
      h(
        'td',
        {},
        `${e.actor.user}${e.actor.claimedOperator ? ` (${e.actor.claimedOperator})` : ''} via ${e.actor.via}`,
      ),
      h('td', {}, e.action),
      h('td', {}, e.target),
      h(
        'td',
        {},
        badge(e.outcome, e.outcome === 'ok' ? 'ok' : 'bad'),
        e.error ? h('div', { class: 'muted' }, e.error) : null,
      ),
    ),
  );
  document
    .querySelector('#audit tbody')
    .replaceChildren(
      ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No action recorded.'))]),
    );
}
