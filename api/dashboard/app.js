// The OSR dashboard: plain browser JavaScript, no build step, no third-party code. It reads the
// API with the bearer token (from #token=… once, then sessionStorage) and refreshes every few
// seconds. Every text from the API goes into the page as text nodes, never as HTML.
/* global document, window, sessionStorage, localStorage, fetch, history, location, setTimeout, URLSearchParams */
'use strict';

const REFRESH_MS = 4000;
const state = {
  token: '',
  operator: '',
  points: new Map(), // machine -> { lastId, points }
  tracked: new Map(), // workflowId -> { label, status, progress, done }
  busy: false,
};

// ---------- small helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    else if (k === 'style') Object.assign(el.style, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof window.Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function duration(seconds) {
  if (seconds === undefined || seconds === null) return '—';
  const n = Math.round(seconds);
  if (n < 120) return `${n} s`;
  if (n < 7200) return `${Math.round(n / 60)} min`;
  if (n < 172800) return `${Math.round(n / 3600)} h`;
  return `${Math.round(n / 86400)} d`;
}

function ago(iso) {
  if (!iso) return '—';
  return `${duration((Date.now() - Date.parse(iso)) / 1000)} ago`;
}

function clock(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { hour12: false });
}

function bytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function badge(text, tone) {
  return h('span', { class: `badge ${tone || ''}` }, text);
}

function stateTone(st) {
  if (
    ['protected', 'ready', 'done', 'committed', 'failed-over', 'cleaned-up', 'completed', 'ok'].includes(st)
  )
    return 'ok';
  if (
    ['failed', 'timed-out', 'terminated', 'critical', 'stale', 'cut-failed', 'ended-outside-osr'].includes(st)
  )
    return 'bad';
  if (st === 'healthy') return 'ok';
  return 'warn';
}

function toast(message, bad) {
  const el = h('div', { class: `toast${bad ? ' bad' : ''}`, role: 'status' }, message);
  document.getElementById('toasts').append(el);
  setTimeout(() => el.remove(), bad ? 9000 : 5000);
}

function replace(id, ...children) {
  const el = document.getElementById(id);
  el.replaceChildren(...children.flat());
  return el;
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (state.operator) headers['X-OSR-Operator'] = state.operator;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) {
    signOut('The token was refused; enter it again.');
    throw new ApiError(401, data.error ? data.error.message : 'unauthorized');
  }
  if (!res.ok) throw new ApiError(res.status, data.error ? data.error.message : `HTTP ${res.status}`);
  return data;
}

const jobPath = (workflowId) => `/v1/jobs/${encodeURIComponent(workflowId)}`;

// ---------- sign-in ----------

function readToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('token');
  if (fromUrl) {
    sessionStorage.setItem('osr-token', fromUrl);
    // The token leaves the address bar (and history) at once.
    history.replaceState(null, '', location.pathname + location.search);
  }
  state.token = sessionStorage.getItem('osr-token') || '';
  state.operator = localStorage.getItem('osr-operator') || '';
}

function signOut(message) {
  sessionStorage.removeItem('osr-token');
  state.token = '';
  const dialog = document.getElementById('login');
  document.getElementById('login-error').textContent = message || '';
  document.getElementById('login-name').value = state.operator;
  if (!dialog.open) dialog.showModal();
}

function setupLogin() {
  document.getElementById('login-form').addEventListener('submit', () => {
    state.token = document.getElementById('login-token').value.trim();
    state.operator = document.getElementById('login-name').value.trim();
    sessionStorage.setItem('osr-token', state.token);
    localStorage.setItem('osr-operator', state.operator);
    refresh();
  });
  document.getElementById('login').addEventListener('cancel', (e) => e.preventDefault());
  document.getElementById('signout').addEventListener('click', () => signOut(''));
}

// ---------- confirmation ----------

function confirmAction({ title, text, ok, danger, extra }) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  replace('confirm-extra', extra || []);
  const okButton = document.getElementById('confirm-ok');
  okButton.textContent = ok;
  okButton.className = danger ? 'primary danger' : 'primary';
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

async function act(description, call, follow) {
  try {
    const result = await call();
    toast(`${description}: ${result && result.workflowId ? `started ${result.workflowId}` : 'done'}`);
    const refs = result && result.jobs ? result.jobs : result && result.workflowId ? [result] : [];
    for (const ref of refs) track(ref.workflowId, follow || description);
  } catch (err) {
    toast(`${description} refused: ${err.message}`, true);
  }
  refresh();
}

function track(workflowId, label) {
  state.tracked.set(workflowId, { label, done: false });
}

// ---------- actions ----------

function drill(machine) {
  const point = h('input', { type: 'text', value: 'latest', 'aria-label': 'point' });
  confirmAction({
    title: `Drill of ${machine}`,
    text: `Build ${machine}'s disks from a recovery point in an isolated place. Replication and recovery points are not touched. Clean it up afterwards.`,
    ok: 'Start drill',
    extra: h('label', {}, 'Point (latest, latest-app, an id or an ISO time)', point),
  }).then((yes) => {
    if (yes)
      act(`Drill of ${machine}`, () =>
        api('POST', `/v1/machines/${encodeURIComponent(machine)}/test-failover`, {
          point: point.value || 'latest',
        }),
      );
  });
}

function cleanup(machine) {
  confirmAction({
    title: `Clean up drills of ${machine}`,
    text: `Delete the disks every drill of ${machine} made. Recovery points are not touched.`,
    ok: 'Clean up',
  }).then((yes) => {
    if (yes)
      act(`Cleanup of ${machine}'s drills`, () =>
        api('POST', `/v1/machines/${encodeURIComponent(machine)}/test-failover/cleanup`),
      );
  });
}

function failover(machine) {
  const planned = h('input', { type: 'checkbox' });
  confirmAction({
    title: `Fail over ${machine}`,
    text: `${machine} will be brought up in the recovery site from its latest point. This is not a drill. Afterwards, commit it (ends forward replication) or change its point.`,
    ok: 'Fail over',
    danger: true,
    extra: h(
      'label',
      {},
      planned,
      ' Planned: stop the source writes and cut a final point first (no data loss)',
    ),
  }).then((yes) => {
    if (yes)
      act(`Failover of ${machine}`, () =>
        api('POST', `/v1/machines/${encodeURIComponent(machine)}/failover`, { planned: planned.checked }),
      );
  });
}

function commit(machine) {
  confirmAction({
    title: `Commit the failover of ${machine}`,
    text: `Forward replication of ${machine} ends. Its replica and recovery points are kept for reprotect. This cannot be undone.`,
    ok: 'Commit',
    danger: true,
  }).then((yes) => {
    if (yes)
      act(`Commit of ${machine}`, () =>
        api('POST', `/v1/machines/${encodeURIComponent(machine)}/failover/commit`),
      );
  });
}

function planAction(plan, operation) {
  const texts = {
    'test-failover': [
      'Drill of plan',
      'Run a drill of every machine of the plan, group by group. Replication is not touched.',
      'Start drill',
      false,
    ],
    failover: [
      'Fail over plan',
      'Fail over every machine of the plan, group by group, from the latest points. This is not a drill.',
      'Fail over',
      true,
    ],
  };
  const [title, text, ok, danger] = texts[operation];
  confirmAction({ title: `${title} ${plan}`, text, ok, danger }).then((yes) => {
    if (yes)
      act(`${title} ${plan}`, () =>
        api('POST', `/v1/plans/${encodeURIComponent(plan)}/${operation}`, operation === 'failover' ? {} : {}),
      );
  });
}

function commitPlan(job, plan) {
  confirmAction({
    title: `Commit the failover of plan ${plan}`,
    text: 'Every machine of the plan is committed, group by group: forward replication ends. This cannot be undone.',
    ok: 'Commit plan',
    danger: true,
  }).then((yes) => {
    if (yes)
      act(`Commit of plan ${plan}`, () => api('POST', `/v1/plan-jobs/${encodeURIComponent(job)}/commit`));
  });
}

function approve(job, action, instruction) {
  confirmAction({
    title: `Approve ${action}`,
    text: instruction || `The plan job ${job} waits for this manual action. Approve it once it is done.`,
    ok: 'Approve',
  }).then((yes) => {
    if (yes)
      act(`Approval of ${action}`, () =>
        api('POST', `/v1/plan-jobs/${encodeURIComponent(job)}/approve`, {
          action,
          by: state.operator || 'dashboard',
        }),
      );
  });
}

// ---------- rendering ----------

function renderAlerts(list) {
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

function renderMachines(machines, jobs) {
  const failovers = new Map(
    jobs.filter((j) => j.kind === 'failover' && j.machine).map((j) => [j.machine, j]),
  );
  const rows = machines.map((m) => {
    const st = m.status;
    const name = m.machine;
    const buttons = h(
      'td',
      {},
      h('button', { type: 'button', 'data-action': 'drill', onclick: () => drill(name) }, 'Drill'),
      h('button', { type: 'button', 'data-action': 'cleanup', onclick: () => cleanup(name) }, 'Clean up'),
      failovers.has(name)
        ? h(
            'button',
            { type: 'button', class: 'danger', 'data-action': 'commit', onclick: () => commit(name) },
            'Commit',
          )
        : h(
            'button',
            { type: 'button', class: 'danger', 'data-action': 'failover', onclick: () => failover(name) },
            'Failover',
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
      h('td', {}, h('strong', {}, name), h('div', { class: 'muted' }, `policy ${st.policy.name}`)),
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

/** RPO over time, derived from the points: it grows from each point's instant until the next is published. */
function rpoSeries(points, now) {
  const sorted = points
    .map((p) => ({ instant: Date.parse(p.instant), published: Date.parse(p.createdAt || p.instant) }))
    .sort((a, b) => a.published - b.published);
  const series = [];
  for (let i = 0; i < sorted.length; i++) {
    const p = sorted[i];
    const end = i + 1 < sorted.length ? sorted[i + 1].published : now;
    series.push([p.published, (p.published - p.instant) / 1000]);
    series.push([end, (end - p.instant) / 1000]);
  }
  return series;
}

function chart(machine, status, points) {
  const W = 600;
  const H = 160;
  const pad = { l: 48, r: 8, t: 10, b: 20 };
  const now = Date.now();
  const threshold = status ? status.policy.rpoThresholdSeconds : undefined;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
  const series = rpoSeries(points, now);
  const box = h(
    'figure',
    { class: 'chart', 'data-chart': machine },
    h('h3', {}, `${machine}: RPO over time`),
    svg,
  );
  svg.append(s('title', {}, `RPO of ${machine} over time, from its recovery points`));
  if (series.length < 2) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no recovery point yet'));
    return box;
  }
  const t0 = Math.max(series[0][0], now - 6 * 3600_000);
  const visible = series.filter(([t]) => t >= t0);
  const peak = Math.max(1, ...visible.map(([, v]) => v));
  // The threshold is drawn when it is near the curve; far above it, it would flatten the curve.
  const showThreshold = threshold !== undefined && threshold <= peak * 4;
  const maxY = Math.max(peak * 1.25, showThreshold ? threshold * 1.15 : 0);
  const x = (t) => pad.l + ((Math.max(t, t0) - t0) / Math.max(1, now - t0)) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - (Math.min(v, maxY) / maxY) * (H - pad.t - pad.b);
  const clipped = series.map(([t, v]) => [t < t0 ? t0 : t, v]);
  const path = clipped.map(([t, v], i) => `${i ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  svg.append(s('line', { class: 'axis', x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b }));
  svg.append(s('line', { class: 'axis', x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b }));
  svg.append(
    s('path', {
      class: 'area',
      d: `${path} L${x(now).toFixed(1)},${H - pad.b} L${x(t0).toFixed(1)},${H - pad.b} Z`,
    }),
  );
  svg.append(s('path', { class: 'series', d: path }));
  if (threshold !== undefined && !showThreshold)
    svg.append(
      s(
        'text',
        { x: W - pad.r - 2, y: pad.t + 10, 'text-anchor': 'end' },
        `threshold ${duration(threshold)}: far above`,
      ),
    );
  if (showThreshold) {
    svg.append(
      s('line', { class: 'threshold', x1: pad.l, x2: W - pad.r, y1: y(threshold), y2: y(threshold) }),
    );
    svg.append(
      s(
        'text',
        { x: W - pad.r - 2, y: y(threshold) - 3, 'text-anchor': 'end' },
        `threshold ${duration(threshold)}`,
      ),
    );
  }
  svg.append(s('text', { x: pad.l - 4, y: pad.t + 8, 'text-anchor': 'end' }, duration(maxY)));
  svg.append(s('text', { x: pad.l - 4, y: H - pad.b, 'text-anchor': 'end' }, '0'));
  const fmt = (t) => new Date(t).toLocaleTimeString(undefined, { hour12: false });
  svg.append(s('text', { x: pad.l, y: H - 4 }, fmt(t0)));
  svg.append(s('text', { x: W - pad.r, y: H - 4, 'text-anchor': 'end' }, `now ${fmt(now)}`));
  const current = series[series.length - 1][1];
  box.append(
    h(
      'figcaption',
      { class: 'muted' },
      `now ${duration(current)}, peak ${duration(peak)} · ${points.length} points${showThreshold ? " · dashed: the policy's threshold" : ''}`,
    ),
  );
  return box;
}

async function renderCharts(machines) {
  const charts = [];
  for (const m of machines) {
    const last = m.status && m.status.lastPoint ? m.status.lastPoint.id : '';
    let cached = state.points.get(m.machine);
    if (!cached || cached.lastId !== last) {
      try {
        const data = await api('GET', `/v1/machines/${encodeURIComponent(m.machine)}/points`);
        cached = { lastId: last, points: data.points || [] };
        state.points.set(m.machine, cached);
      } catch {
        cached = { lastId: '', points: [] };
      }
    }
    charts.push(chart(m.machine, m.status, cached.points));
  }
  replace('charts', charts);
}

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

async function renderJobs(running) {
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
      jobState === 'failed-over' && detail.kind === 'failover' && detail.machine
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

async function renderPlans() {
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
          h(
            'button',
            {
              type: 'button',
              'data-action': 'plan-drill',
              onclick: () => planAction(plan.name, 'test-failover'),
            },
            'Drill',
          ),
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
          latest && latest.operation === 'failover' && status && status.state === 'failed-over'
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

function renderServers(servers) {
  const rows = servers.map((sv) => {
    const health = sv.stale
      ? badge(`stale ${duration(sv.ageSeconds)}`, 'bad')
      : sv.alerts.length
        ? badge(sv.alerts.map((a) => a.kind).join(', '), 'warn')
        : badge('healthy', 'ok');
    const pipe = sv.pipeline
      ? `${bytes(sv.pipeline.bytesInFlight)} / ${bytes(sv.pipeline.maxBytesInFlight)}${sv.pipeline.waiting ? `, ${sv.pipeline.waiting} waiting` : ''}`
      : '—';
    return h(
      'tr',
      { 'data-server': sv.id },
      h('td', {}, h('strong', {}, sv.role)),
      h('td', {}, `${sv.host} / ${sv.pid}`),
      h('td', {}, health),
      h('td', {}, ago(sv.at)),
      h('td', {}, `${sv.cpuPercent}%`),
      h('td', {}, bytes(sv.rssBytes)),
      h('td', {}, `${sv.eventLoopLagMs.p99} ms`),
      h('td', {}, pipe),
      h('td', {}, sv.pipeline ? `${bytes(sv.pipeline.throughputBytesPerSecond)}/s` : '—'),
    );
  });
  document
    .querySelector('#servers tbody')
    .replaceChildren(
      ...(rows.length
        ? rows
        : [h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No worker heartbeat yet.'))]),
    );
}

function renderAudit(entries) {
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

// ---------- refresh loop ----------

async function refresh() {
  if (!state.token || state.busy) return;
  state.busy = true;
  try {
    const [machines, jobs, alerts, servers, audit] = await Promise.all([
      api('GET', '/v1/machines'),
      api('GET', '/v1/jobs'),
      api('GET', '/v1/alerts').catch(() => ({ alerts: [] })),
      api('GET', '/v1/servers').catch(() => ({ servers: [] })),
      api('GET', '/v1/audit?limit=8').catch(() => ({ entries: [] })),
    ]);
    renderAlerts(alerts);
    renderMachines(machines.machines, jobs.jobs);
    renderServers(servers.servers);
    renderAudit(audit.entries);
    const protectedCount = machines.machines.filter((m) => m.status && m.status.state === 'protected').length;
    document.getElementById('summary').textContent =
      `${machines.machines.length} machine(s), ${protectedCount} protected · ${jobs.jobs.filter((j) => j.kind !== 'protect').length} running job(s) · ${alerts.alerts.length} alert(s)`;
    await Promise.all([renderCharts(machines.machines), renderJobs(jobs.jobs), renderPlans()]);
    document.getElementById('refreshed').textContent =
      `updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
  } catch (err) {
    if (err.status !== 401)
      document.getElementById('refreshed').textContent = `cannot reach the API: ${err.message}`;
  } finally {
    state.busy = false;
  }
}

function start() {
  readToken();
  setupLogin();
  if (!state.token) signOut('');
  else refresh();
  (function loop() {
    setTimeout(() => {
      refresh().finally(loop);
    }, REFRESH_MS);
  })();
}

start();
