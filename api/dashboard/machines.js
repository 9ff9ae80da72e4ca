// The alerts list and the protected machines' table: state, health badge, RPO bar, points,
// bytes, cycles and the machine's buttons.
/* global document */
import { cleanup, commit, drill, failover } from './actions.js';
import { ago, badge, bytes, clock, duration, h, replace, stateTone } from './dom.js';
import { can } from './state.js';

export function renderAlerts(list) {
  const alerts = list.alerts || [];
  document.getElementById('alerts-count').textContent = String(alerts.length);
  if (!alerts.length) return replace('alerts', h('li', { class: 'empty' }, 'No alerts.'));
  replace(
    'alerts',
    alerts.map((a) =>
      h(
        'li',
        { 'data-alert': a.id },
        badge(a.severity, a.severity === 'critical' ? 'bad' : 'warn'),
        h('time', { datetime: a.at }, clock(a.at)),
        h('strong', {}, a.kind),
        h('span', {}, a.message),
      ),
    ),
  );
}

function rpoCell(status) {
  const threshold = status.policy.rpoThresholdSeconds;
  const rpo = status.rpoSeconds;
  if (rpo === undefined)
    return h(
      'td',
      { class: 'rpo' },
      h('span', { class: 'muted' }, 'no point yet'),
      ` / ${duration(threshold)}`,
    );
  const ratio = Math.min(1, rpo / threshold);
  const tone = rpo > threshold ? 'bad' : ratio > 0.7 ? 'warn' : '';
  const bar = h(
    'div',
    { class: `bar ${tone}` },
    h('span', { style: { width: `${Math.max(2, ratio * 100)}%` } }),
  );
  return h(
    'td',
    { class: 'rpo', 'data-rpo': rpo },
    h('strong', {}, duration(rpo)),
    ` / ${duration(threshold)}`,
    bar,
  );
}

/** The machine's health badge: the API's health field (shared/machine-health.ts), never judged here. */
function healthCell(health) {
  const level = health ? health.level : 'unknown';
  const reasons = health && health.reasons.length ? health.reasons : [];
  return h(
    'td',
    { 'data-health': level, title: reasons.join('\n') || undefined },
    badge(level, stateTone(level)),
    reasons.length ? h('div', { class: 'muted' }, reasons[0]) : null,
  );
}

/** What the Azure readiness check found inside the guest at protect, each problem with its fix. */
function readinessBlock(r) {
  if (!r) return null;
  if (!r.checked)
    return h(
      'div',
      { class: 'muted', 'data-azure-readiness': 'not-checked' },
      `Azure readiness: not checked (${r.reason})`,
    );
  if (r.ready) return h('div', { class: 'muted', 'data-azure-readiness': 'ready' }, 'Azure readiness: ready');
  return h(
    'details',
    { 'data-azure-readiness': 'problems' },
    h('summary', {}, badge(`Azure: ${r.problems.length} problem(s)`, 'warn')),
    h(
      'ul',
      {},
      r.problems.map((p) =>
        h('li', {}, h('span', {}, p.what), h('div', { class: 'muted' }, `Fix: ${p.fix}`)),
      ),
    ),
  );
}

export function renderMachines(machines, jobs) {
  const failovers = new Map(
    jobs.filter((j) => j.kind === 'failover' && j.machine).map((j) => [j.machine, j]),
  );
  const rows = machines.map((m) => {
    const st = m.status;
    const name = m.machine;
    const buttons = h(
      'td',
      {},
      can('POST /v1/machines/{name}/test-failover') &&
        h('button', { type: 'button', 'data-action': 'drill', onclick: () => drill(name) }, 'Drill'),
      can('POST /v1/machines/{name}/test-failover/cleanup') &&
        h('button', { type: 'button', 'data-action': 'cleanup', onclick: () => cleanup(name) }, 'Clean up'),
      !failovers.has(name)
        ? can('POST /v1/machines/{name}/failover') &&
            h(
              'button',
              { type: 'button', class: 'danger', 'data-action': 'failover', onclick: () => failover(name) },
              'Failover',
            )
        : can('POST /v1/machines/{name}/failover/commit') &&
            h(
              'button',
              { type: 'button', class: 'danger', 'data-action': 'commit', onclick: () => commit(name) },
              'Commit',
            ),
    );
    if (!st)
      return h(
        'tr',
        { 'data-machine': name },
        h('td', {}, h('strong', {}, name)),
        h('td', {}, badge(m.ended ? m.ended.state : 'not replicating', 'bad')),
        healthCell(m.health),
        h('td', { colspan: 5, class: 'muted' }, m.note || ''),
        buttons,
      );
    const syncing = (st.progress || []).length
      ? (() => {
          const done = st.progress.reduce((a, p) => a + p.bytesDone, 0);
          const total = st.progress.reduce((a, p) => a + p.bytesTotal, 0);
          return ` ${total ? Math.floor((100 * done) / total) : 0}%`;
        })()
      : '';
    return h(
      'tr',
      { 'data-machine': name, 'data-state': st.state },
      h(
        'td',
        {},
        h('strong', {}, name),
        h('div', { class: 'muted' }, `policy ${st.policy.name}`),
        readinessBlock(st.azureReadiness),
      ),
      h('td', {}, badge(`${st.state}${syncing}`, stateTone(st.state))),
      healthCell(st.health),
      rpoCell(st),
      h(
        'td',
        {},
        st.lastPoint
          ? [clock(st.lastPoint.instant), h('div', { class: 'muted' }, ago(st.lastPoint.instant))]
          : '—',
      ),
      h(
        'td',
        {},
        st.lastAppPoint
          ? [clock(st.lastAppPoint.instant), h('div', { class: 'muted' }, ago(st.lastAppPoint.instant))]
          : '—',
      ),
      h('td', {}, `${bytes(st.stats.bytesSent)} / ${bytes(st.stats.bytesChanged)}`),
      h('td', {}, `${st.stats.cycles}${st.stats.failedCycles ? ` (${st.stats.failedCycles} failed)` : ''}`),
      buttons,
    );
  });
  const body = document.querySelector('#machines tbody');
  body.replaceChildren(
    ...(rows.length
      ? rows
      : [
          h(
            'tr',
            {},
            h('td', { colspan: 9, class: 'empty' }, 'No protected machine. Protect one with osr protect.'),
          ),
        ]),
  );
}
