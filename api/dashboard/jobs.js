// The jobs list: running jobs and those started from the page, with their progress.
import { commit } from './actions.js';
import { api, jobPath } from './api.js';
import { badge, bytes, clock, h, replace, stateTone } from './dom.js';
import { can, state } from './state.js';

function progressOf(progress) {
  if (!progress) return undefined;
  if (Array.isArray(progress.steps) && progress.steps.length) {
    const done = progress.steps.filter((st) => st.state !== 'running').length;
    const current = progress.steps.find((st) => st.state === 'running');
    return {
      ratio: done / (progress.steps.length + (current ? 0 : 0)),
      text: current ? current.name : progress.state,
    };
  }
  if (Array.isArray(progress.groups)) {
    const items = progress.groups.flatMap((g) => [...g.machines, ...g.actions]);
    const done = items.filter((i) => !['pending', 'running', 'waiting'].includes(i.state)).length;
    const waiting = items.find((i) => i.state === 'waiting');
    return {
      ratio: items.length ? done / items.length : 0,
      text: waiting ? `waiting for ${waiting.id}` : progress.state,
    };
  }
  if (Array.isArray(progress.progress) && progress.progress.length) {
    const done = progress.progress.reduce((a, p) => a + p.bytesDone, 0);
    const total = progress.progress.reduce((a, p) => a + p.bytesTotal, 0);
    return { ratio: total ? done / total : 0, text: `${bytes(done)} of ${bytes(total)}` };
  }
  return undefined;
}

export async function renderJobs(running) {
  const shown = new Map();
  for (const j of running) if (j.kind !== 'protect') shown.set(j.workflowId, { job: j });
  for (const [id, t] of state.tracked) if (!shown.has(id)) shown.set(id, { job: t.job, tracked: t });
  const items = [];
  for (const [id, entry] of [...shown].slice(0, 30)) {
    let detail;
    try {
      detail = await api('GET', jobPath(id));
    } catch {
      detail = entry.job;
    }
    if (!detail) continue;
    const t = state.tracked.get(id);
    if (t) t.job = detail;
    // A consistency group whose cuts fail is not "active" with an empty bar: it says so.
    const groupAlerts =
      detail.kind === 'group' && detail.progress && Array.isArray(detail.progress.alerts)
        ? detail.progress.alerts
        : [];
    const cutFailed = groupAlerts.find((a) => a.kind === 'cut-failed') || groupAlerts[0];
    const jobState = cutFailed
      ? cutFailed.kind
      : (detail.progress && detail.progress.state) || detail.state || detail.status;
    const p = progressOf(detail.progress);
    const finished = detail.status && detail.status !== 'running';
    const bar = h(
      'div',
      { class: `bar ${stateTone(jobState) === 'bad' ? 'bad' : ''}` },
      h('span', { style: { width: `${finished ? 100 : Math.max(3, (p ? p.ratio : 0.05) * 100)}%` } }),
    );
    const commitButton =
      jobState === 'failed-over' &&
      detail.kind === 'failover' &&
      detail.machine &&
      can('POST /v1/machines/{name}/failover/commit')
        ? h(
            'button',
            {
              type: 'button',
              class: 'danger',
              'data-action': 'commit',
              onclick: () => commit(detail.machine),
            },
            'Commit',
          )
        : null;
    items.push(
      h(
        'li',
        { 'data-job': id, 'data-kind': detail.kind || '', 'data-state': jobState || '' },
        h('time', { datetime: detail.startTime || '' }, clock(detail.startTime)),
        badge(jobState || 'unknown', stateTone(jobState)),
        h(
          'span',
          { class: 'what' },
          h('strong', {}, detail.summary || id),
          h(
            'div',
            { class: 'muted' },
            `${detail.kind || ''} · ${id}${p ? ` · ${p.text}` : ''}${cutFailed ? ` · ${cutFailed.message}${cutFailed.count > 1 ? ` (${cutFailed.count} times)` : ''}` : ''}`,
          ),
        ),
        h('div', { class: 'progress' }, bar),
        commitButton,
      ),
    );
  }
  if (!items.length) return replace('jobs', h('li', { class: 'empty' }, 'No running job.'));
  replace('jobs', items);
}
