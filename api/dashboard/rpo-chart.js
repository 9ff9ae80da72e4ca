// The RPO-over-time chart of each machine (inline SVG), from its recovery points.
import { api } from './api.js';
import { duration, h, replace, s } from './dom.js';
import { state } from './state.js';

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

export async function renderCharts(machines) {
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
