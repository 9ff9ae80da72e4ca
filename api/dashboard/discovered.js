// Hosts (with their process servers: which host lost its server) on every refresh, and the
// machines they run, discovered on demand (each discovery asks every host's process server, too
// heavy for the refresh loop), with a Protect button for those OSR can track from the host or
// through their Mobility agent.
/* global document */
import { protectDiscovered, protectThroughAgent } from './actions.js';
import { api } from './api.js';
import { badge, bytes, h, toast } from './dom.js';
import { can } from './state.js';

export function renderHosts(hosts) {
  const rows = hosts.map((host) =>
    h(
      'tr',
      { 'data-host': host.name },
      h('td', {}, h('strong', {}, host.name)),
      h('td', {}, host.kind),
      h('td', {}, host.url || host.dir || host.uri || ''),
      h(
        'td',
        {},
        host.serverProblem
          ? badge(host.servers.stale.length ? 'process server lost' : 'no process server', 'bad')
          : badge(`${host.servers.live.length} live`, 'ok'),
        host.serverProblem ? h('div', { class: 'muted' }, host.serverProblem) : '',
      ),
    ),
  );
  document
    .querySelector('#hosts tbody')
    .replaceChildren(
      ...(rows.length
        ? rows
        : [h('tr', {}, h('td', { colspan: 4, class: 'empty' }, 'No host added (osr host add).'))]),
    );
}

function disks(m) {
  return m.disks
    .map((d) => `${d.diskId} ${d.sizeBytes === undefined ? '?' : bytes(d.sizeBytes)} ${d.format || ''}`)
    .join(', ');
}

/** Protect from the host (a QMP socket it found), or through the machine's Mobility agent. */
function protectButton(m) {
  if (m.protectedAs) return '';
  const agentId = m.agentId || (m.details && m.details.agentId);
  const button = (onclick) => h('button', { type: 'button', 'data-action': 'protect', onclick }, 'Protect');
  if (agentId && can('POST /v1/agents/{id}/protect'))
    return button(() => protectThroughAgent(agentId, m.name));
  if (m.changeTracking.possible && m.details && m.details.qmpSocket && can('POST /v1/hosts/{name}/protect'))
    return button(() => protectDiscovered(m.host, m.name));
  return '';
}

export async function discover() {
  const body = document.querySelector('#discovered tbody');
  try {
    const result = await api('GET', '/v1/discover');
    const rows = result.machines.map((m) =>
      h(
        'tr',
        { 'data-discovered': `${m.host}/${m.name}` },
        h('td', {}, m.host),
        h('td', {}, h('strong', {}, m.name)),
        h(
          'td',
          {},
          m.state,
          // A Mobility agent: its version, and whether it is the one this release ships.
          m.details && m.details.agentVersion
            ? h(
                'div',
                { class: 'muted' },
                `agent ${m.details.agentVersion} `,
                m.details.outdated ? h('span', { title: m.details.outdated }, badge('outdated', 'warn')) : '',
              )
            : '',
        ),
        h('td', {}, disks(m) || '—'),
        h(
          'td',
          {},
          m.changeTracking.possible ? badge('yes', 'ok') : badge('no', 'warn'),
          h('div', { class: 'muted' }, m.changeTracking.reason || ''),
        ),
        h('td', {}, m.protectedAs || '—'),
        h('td', {}, protectButton(m)),
      ),
    );
    for (const host of result.hosts.filter((x) => !x.ok))
      toast(`host ${host.host} not read: ${host.message}`, true);
    body.replaceChildren(
      ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No machine found.'))]),
    );
  } catch (err) {
    toast(`discovery failed: ${err.message}`, true);
  }
}
