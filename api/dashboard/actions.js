// What the operator's buttons do: each asks for confirmation, calls the API, says how it went in a
// toast and follows the job it started in the jobs list.
/* global document */
import { api } from './api.js';
import { bytes, h, replace, toast } from './dom.js';
import { refresh, state } from './state.js';

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

export function drill(machine) {
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

export function cleanup(machine) {
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

export function failover(machine) {
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

export function commit(machine) {
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

export function planAction(plan, operation) {
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

export function commitPlan(job, plan) {
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

export function approve(job, action, instruction) {
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

export function protectDiscovered(host, machine) {
  const as = h('input', { type: 'text', value: machine, 'aria-label': 'protect as' });
  const nbd = h('input', { type: 'text', value: '', 'aria-label': 'NBD socket' });
  confirmAction({
    title: `Protect ${machine} on ${host}`,
    text: `Start replicating ${machine}'s disks (host ${host}, served by that host's process servers), policy default.`,
    ok: 'Protect',
    extra: [
      h('label', {}, 'Protect as', as),
      h('label', {}, "NBD socket, if the machine's QEMU already runs an NBD server (optional)", nbd),
    ],
  }).then((yes) => {
    if (yes)
      act(`Protection of ${machine}`, () =>
        api('POST', `/v1/hosts/${encodeURIComponent(host)}/protect`, {
          machine,
          as: as.value || machine,
          ...(nbd.value ? { nbdSocket: nbd.value } : {}),
        }),
      );
  });
}

/**
 * Protects a machine through its Mobility agent: the disks are the agent's own (a disk in use
 * cannot be tracked live and is shown but not offered), as `osr protect --agent` takes them.
 */
export async function protectThroughAgent(agentId, machine) {
  let agent;
  try {
    agent = await api('GET', `/v1/agents/${encodeURIComponent(agentId)}`);
  } catch (err) {
    toast(`agent ${agentId} not read: ${err.message}`, true);
    return;
  }
  const as = h('input', { type: 'text', value: machine, 'aria-label': 'protect as' });
  const policy = h('input', { type: 'text', value: '', 'aria-label': 'policy' });
  const disks = agent.facts.disks.map((d) => ({
    disk: d,
    box: h('input', { type: 'checkbox', 'data-disk': d.name, disabled: Boolean(d.inUse || d.readOnly) }),
  }));
  const free = disks.filter((d) => !d.box.disabled);
  if (free.length === 1) free[0].box.checked = true;
  confirmAction({
    title: `Protect ${machine} through agent ${agentId}`,
    text: `Start replicating the chosen disks of ${agent.facts.hostname} (${agent.facts.os}) through its Mobility agent. The machine then uses each disk as /dev/mapper/osr-<disk>.`,
    ok: 'Protect',
    extra: [
      h('label', {}, 'Protect as', as),
      h('label', {}, 'Policy (empty: default)', policy),
      ...disks.map(({ disk, box }) =>
        h(
          'label',
          {},
          box,
          ` ${disk.name} ${bytes(disk.sizeBytes)}`,
          disk.inUse ? ` (in use: ${disk.inUse})` : disk.readOnly ? ' (read-only)' : '',
        ),
      ),
    ],
  }).then((yes) => {
    const chosen = disks.filter((d) => d.box.checked).map((d) => d.disk.name);
    if (!yes) return;
    if (!chosen.length) {
      toast(`Protection of ${machine} refused: choose at least one disk`, true);
      return;
    }
    act(`Protection of ${machine}`, () =>
      api('POST', `/v1/agents/${encodeURIComponent(agentId)}/protect`, {
        as: as.value || machine,
        disks: chosen,
        ...(policy.value ? { policy: policy.value } : {}),
      }),
    );
  });
}

export function decideRequest(approval, yes) {
  const { kind, target, requestedBy } = approval.request;
  confirmAction({
    title: `${yes ? 'Approve' : 'Reject'} the ${kind} of ${target}`,
    text: yes
      ? `${requestedBy} asked for it. Approved, it runs at once, in your name.`
      : `${requestedBy} asked for it. Rejected, it does not run.`,
    ok: yes ? 'Approve' : 'Reject',
    danger: yes,
  }).then((ok) => {
    if (ok)
      act(`${yes ? 'Approval' : 'Rejection'} of the ${kind} of ${target}`, () =>
        api('POST', `/v1/approvals/${encodeURIComponent(approval.id)}/${yes ? 'approve' : 'reject'}`),
      );
  });
}
