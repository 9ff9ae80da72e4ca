// The process servers and workers, from their heartbeats.
/* global document */
import { ago, badge, bytes, duration, h } from './dom.js';

export function renderServers(servers) {
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
      h(
        'td',
        {},
        h('strong', {}, sv.role),
        sv.hosts ? h('div', { class: 'muted' }, `hosts ${sv.hosts.join(', ')}`) : '',
      ),
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
