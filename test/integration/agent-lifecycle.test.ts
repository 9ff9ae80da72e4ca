// The agent's life after install, with the real parts: the agent test guest under QEMU, two
// process-server workers on one site (each with its own agent listener), control and applier
// workers, Temporal and Azurite. The agent's work goes to the queue of the process server holding
// its connection (read from the workflow history); its version and `outdated` follow the bundle
// this release ships (changed here by a marker); `osr agent upgrade` goes over the agent's own
// connection while its machine is protected, refuses a bundle whose SHA-256 is not the release's,
// rolls back by itself from a version that cannot start, and refuses unknown or offline agents.
// `osr unprotect` after the machine's workflow was terminated removes the agent's tracking through
// the process server holding its connection.
// An upgraded agent whose launcher predates the node flags rewrites it and restarts under it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { bundleVersion } from '../../agent/bundle';
import { AGENT_NODE_FLAGS, LAUNCHER } from '../../agent/launcher';
import { stopPid, type RunningProcess } from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';
import type { AgentView } from '../../operations/agents';
import { ControlContext } from '../../operations/context';
import { listPoints } from '../../operations/machines';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import { upgradeAgentWorkflowId } from '../../shared/contracts/upgrade-agent';
import type { RecoveryPoint } from '../../shared/replication-types';
import { agentListenerQueue } from '../../shared/task-queues';
import { agentListenerEnv, onAgentProcess } from '../helpers/agent-fixture';
import { startAgentGuest, type AgentGuest } from '../helpers/agent-guest';
import { recordsOf, recordWorkload } from '../helpers/agent-records';
import { assertRefused, cliFor } from '../helpers/cli';
import { scheduledActivities } from '../helpers/history-activities';
import { pollFor } from '../helpers/poll';
import { eraLogFile } from '../helpers/era-log';
import { assertReplays } from '../helpers/replay';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const MiB = 1024 * 1024;
const BASE = 2048;
let stack: TestStack;
let guest: AgentGuest;
let ctx: ControlContext;
let agentId: string;
let holder: RunningProcess;
let listener: string;
let otherListener: string;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-aglife-'));
/** The release's bundle as the control plane ships it, and the process servers' copy. */
const shipped = path.join(scratch, 'cli-agent');
const psCopy = path.join(scratch, 'ps-agent');
const osr = cliFor(() => stack.env);

async function sh(command: string, timeoutMs?: number): Promise<string> {
  const r = await guest.ssh(command, timeoutMs);
  assert.equal(r.code, 0, `${command}: ${r.stderr}`);
  return r.stdout;
}

async function agent(): Promise<AgentView> {
  const r = await osr(['agent', 'show', agentId, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as AgentView;
}

/** Appends a line to main.js of the given bundles (a new build of the agent). */
function mark(line: string, ...dirs: string[]): void {
  for (const dir of dirs) fs.appendFileSync(path.join(dir, 'main.js'), `\n${line}\n`);
}

function pointAfter(iso: string, what: string): Promise<RecoveryPoint> {
  return pollFor(async () => (await listPoints(ctx, 'web')).find((p) => p.instant > iso), {
    timeoutMs: 180_000,
    intervalMs: 2000,
    failure: () => new Error(`no point ${what} within 180 s`),
  });
}

/** The agent's vault record, but its heartbeat time (its listener refreshes that each minute). */
const agentRecord = async () => {
  const found = await ctx.vault.read<Record<string, unknown>>(`agents/${agentId}.json`);
  return { ...found?.value, lastSeenAt: undefined };
};

const agentPid = async () => (await sh(onAgentProcess('true'))).trim();

before(async () => {
  const distAgent = path.join(__dirname, '..', '..', 'agent');
  for (const dir of [shipped, psCopy]) fs.cpSync(distAgent, dir, { recursive: true });
  const [portA, portB] = [await freePort(), await freePort()];
  listener = `10.0.2.2:${portA}`;
  otherListener = `10.0.2.2:${portB}`;
  [stack, guest] = await Promise.all([
    startTestStack({ extraEnv: { OSR_AGENT_BUNDLE: shipped } }),
    startAgentGuest({ hostname: 'web-2', diskSizes: [8 * MiB, 16 * MiB], bootTimeoutMs: 240_000 }),
  ]);
  ctx = new ControlContext(stack.config);
  const psEnv = (port: number) => ({ ...agentListenerEnv(port), OSR_AGENT_BUNDLE: psCopy });
  await Promise.all([stack.startWorker('control'), stack.startWorker('cloud-applier')]);
  // Two process servers on the site's queue; the agent is installed to the first one's listener.
  holder = await stack.startWorker('process-server', psEnv(portA));
  await stack.startWorker('process-server', psEnv(portB));
  const installed = await osr([
    ...['agent', 'install', '--ssh', guest.sshTarget, '--key', guest.keyFile, '--server', listener],
    ...['--host-key-fingerprint', guest.hostKeyFingerprint, '--json'],
  ]);
  assert.equal(installed.code, 0, `${installed.stdout}\n${installed.stderr}`);
  agentId = (JSON.parse(installed.stdout) as { id: string }).id;
  const policy = await osr(['policy', 'create', 'agent', '--crash-every', '10s', '--app-every', '0']);
  assert.equal(policy.code, 0, policy.stderr);
  const r = await osr(['protect', 'web', '--agent', agentId, '--disks', 'vdb', '--policy', 'agent']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
});

after(async () => {
  await guest?.stop();
  if (holder) await stopPid(holder.pid);
  await stack?.stop();
  fs.rmSync(scratch, { recursive: true, force: true });
});

test("with two process servers on the site, the agent machine's work goes to the one holding its connection", async () => {
  await pollFor(async () => ((await listPoints(ctx, 'web')).length >= 2 ? true : undefined), {
    timeoutMs: 240_000,
    intervalMs: 2000,
    failure: () => new Error('no second point within 240 s'),
  });
  const work = (await scheduledActivities(stack.client, protectWorkflowId('web'))).filter((a) =>
    a.queue.startsWith('osr-process-server'),
  );
  assert.ok(work.some((a) => a.name === 'transferDisk') && work.some((a) => a.name === 'freezePoint'));
  for (const a of work) assert.equal(a.queue, agentListenerQueue(listener), `${a.name} on ${a.queue}`);
  const status = await osr(['status', 'web', '--json']);
  assert.equal((JSON.parse(status.stdout) as { stats: { failedCycles: number } }).stats.failedCycles, 0);
});

test('an agent shows its version, and outdated once the release ships another build', async () => {
  const before = await agent();
  assert.equal(before.version, bundleVersion(shipped));
  assert.match(before.version, /^0\.1\.0\+[0-9a-f]{12}$/);
  assert.equal(before.outdated, false);
  mark('// build 2', shipped, psCopy);
  const now = await agent();
  assert.equal(now.version, before.version);
  assert.equal(now.shippedVersion, bundleVersion(shipped));
  assert.notEqual(now.shippedVersion, before.version);
  assert.equal(now.outdated, true);
  const list = await osr(['agent', 'list']);
  assert.match(list.stdout, new RegExp(`${agentId}.*${before.version.replace('+', '\\+')}\\s+outdated`));
});

test('an unknown id, a malformed one or no id at all is refused with the fix; nothing is started', async () => {
  const record = await agentRecord();
  assertRefused(
    await osr(['agent', 'upgrade', 'ag-000000000000']),
    4,
    /no agent ag-000000000000; enrolled: ag-/,
  );
  assertRefused(
    await osr(['agent', 'upgrade', 'web-2']),
    2,
    /agent id "web-2" is not valid: use ag- and 12 hex/,
  );
  assertRefused(await osr(['agent', 'upgrade']), 2, /name one agent id, or --all/);
  assert.deepEqual(await agentRecord(), record);
  await assert.rejects(stack.client.workflow.getHandle(upgradeAgentWorkflowId(agentId)).describe());
});

test("a bundle whose SHA-256 is not the release's is refused by the agent; the old agent keeps running", async () => {
  const pid = await agentPid();
  assert.match(pid, /^\d+$/, `one agent process before the refused upgrade: ${pid}`);
  const files = await sh('sha256sum /opt/osr-agent/agent/main.js');
  mark('// a different copy on the process server', psCopy);
  const r = await osr(['agent', 'upgrade', agentId]);
  assertRefused(
    r,
    5,
    /refused the upgrade: the bundle's SHA-256 is [0-9a-f]{64}, not the expected [0-9a-f]{64}/,
  );
  fs.copyFileSync(path.join(shipped, 'main.js'), path.join(psCopy, 'main.js'));
  assert.equal(await agentPid(), pid);
  assert.equal(await sh('sha256sum /opt/osr-agent/agent/main.js'), files);
  assert.equal((await sh('ls /opt/osr-agent')).includes('agent.new'), false);
  const now = await agent();
  assert.equal(now.state, 'connected');
  assert.equal(now.outdated, true);
  await assertReplays(
    stack.client.workflow.getHandle(upgradeAgentWorkflowId(agentId)),
    'upgradeAgent-refused',
  );
});

test('upgrade while protected: the agent restarts into the new build, keeps its id and log, the next point is a delta with every record; an old launcher gets the node flags', async () => {
  const old = (await agent()).version;
  // As installed before the V8 flags: the upgrade replaces only agent/, the new agent its launcher.
  const oldLauncher = LAUNCHER.replace(` ${AGENT_NODE_FLAGS}`, '');
  assert.notEqual(oldLauncher, LAUNCHER);
  await sh(`cat > /opt/osr-agent/osr-agent <<'EOF'\n${oldLauncher}EOF`);
  await sh(
    `rm -f /tmp/stop /tmp/stopped; cat > /tmp/workload.sh <<'EOF'\n${recordWorkload(BASE)}\nEOF\nsetsid sh /tmp/workload.sh </dev/null >/dev/null 2>&1 &`,
  );
  const acked = async () => Number((await sh('cat /tmp/acked 2>/dev/null || echo 0')).trim());
  await pollFor(async () => ((await acked()) >= 3 ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 1000,
    failure: () => new Error('the workload acknowledged no record within 60 s'),
  });
  const startedAt = new Date();
  const r = await osr(['agent', 'upgrade', agentId]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /staging the bundle[\s\S]*restarting into it[\s\S]*connected/);
  assert.match(
    r.stdout,
    new RegExp(
      `${agentId} upgraded: ${old.replace('+', '\\+')} → ${bundleVersion(shipped).replace('+', '\\+')}`,
    ),
  );
  const now = await agent();
  assert.deepEqual([now.id, now.version, now.outdated], [agentId, bundleVersion(shipped), false]);
  assert.match(await sh('tail -n 3 /opt/osr-agent/agent/main.js'), /build 2/);
  assert.equal(await sh('cat /opt/osr-agent/osr-agent'), LAUNCHER);
  const pid = (await agentPid()).trim();
  assert.match(pid, /^\d+$/, `one agent process after the upgrade: ${pid}`);
  assert.ok((await sh(`tr '\\0' ' ' </proc/${pid}/cmdline`)).includes(` ${AGENT_NODE_FLAGS} `));
  // The new agent confirmed itself: the watchdog removed the old folder.
  await pollFor(async () => ((await sh('ls /opt/osr-agent')).includes('agent.old') ? undefined : true), {
    timeoutMs: 30_000,
    intervalMs: 1000,
    failure: () => new Error('agent.old is still there 30 s after the upgrade'),
  });
  // The old agent's clean stop moved the change log onto the disk; the new one took it back to RAM.
  assert.equal(await eraLogFile(sh, 'vdb'), '/run/osr-agent/vdb.era');
  await pointAfter(new Date().toISOString(), 'after the upgrade');
  await sh('touch /tmp/stop');
  await pollFor(async () => ((await guest.ssh('test -e /tmp/stopped')).code === 0 ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 1000,
    failure: () => new Error('the workload did not stop'),
  });
  const total = await acked();
  const last = await pointAfter(new Date().toISOString(), 'after the workload stopped');
  assert.equal(await recordsOf(ctx, last, BASE), total);
  // No resync after the upgrade: every transfer scheduled since sent the change log (delta).
  const sent = (await scheduledActivities(stack.client, protectWorkflowId('web'))).filter(
    (a) => a.name === 'transferDisk' && a.at >= startedAt,
  );
  assert.ok(sent.length >= 2, `${sent.length} transfers since the upgrade`);
  for (const a of sent) assert.equal((a.input as { mode: string }).mode, 'delta');
  await assertReplays(
    stack.client.workflow.getHandle(upgradeAgentWorkflowId(agentId)),
    'upgradeAgent-upgraded',
  );
});

test('a build that cannot start rolls back by itself to the version that ran', async () => {
  const running = (await agent()).version;
  for (const dir of [shipped, psCopy]) {
    const main = path.join(dir, 'main.js');
    fs.writeFileSync(main, `throw new Error('a build that cannot start');\n${fs.readFileSync(main, 'utf8')}`);
  }
  const r = await osr(['agent', 'upgrade', agentId, '--timeout', '15s']);
  assertRefused(r, 3, /did not connect within 15 s and the agent rolled back to .* by itself/);
  const now = await agent();
  assert.deepEqual([now.state, now.version, now.outdated], ['connected', running, true]);
  assert.match(await sh('cat /opt/osr-agent/upgrade.json'), /"state":"rolled-back"/);
  await assertReplays(
    stack.client.workflow.getHandle(upgradeAgentWorkflowId(agentId)),
    'upgradeAgent-rolled-back',
  );
});

test("enrolled again with the other process server, the agent's work follows it there", async () => {
  const token = await osr(['agent', 'token', '--server', otherListener, '--json']);
  assert.equal(token.code, 0, token.stderr);
  const { command } = JSON.parse(token.stdout) as { command: string };
  assert.match(await sh(`/opt/osr-agent/${command}`), new RegExp(`enrolled as ${agentId}`));
  await pollFor(async () => ((await agent()).listener === otherListener ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 1000,
    failure: () => new Error(`the agent is not at ${otherListener} within 60 s`),
  });
  const movedAt = new Date();
  await pointAfter(movedAt.toISOString(), 'after the move');
  // The freezes after the first look-up made once the record names the other listener.
  const all = await scheduledActivities(stack.client, protectWorkflowId('web'));
  const lookup = all.findIndex((a) => a.name === 'agentQueue' && a.at >= movedAt);
  const work = all.slice(lookup).filter((a) => a.name === 'freezePoint');
  assert.ok(lookup >= 0 && work.length >= 1, `${lookup} ${work.length}`);
  for (const a of work) assert.equal(a.queue, agentListenerQueue(otherListener));
});

test('an offline agent is refused with the fix, and its machine keeps its history', async () => {
  await sh('/etc/init.d/osr-agent stop');
  await pollFor(async () => ((await agent()).state === 'disconnected' ? true : undefined), {
    timeoutMs: 30_000,
    intervalMs: 1000,
    failure: () => new Error('the agent is still shown connected 30 s after its service stopped'),
  });
  const record = await agentRecord();
  assertRefused(
    await osr(['agent', 'upgrade', agentId]),
    2,
    /is disconnected .*: an upgrade goes over its connection. Start its service on the machine/,
  );
  assert.deepEqual(await agentRecord(), record);
  await assertReplays(
    stack.client.workflow.getHandle(protectWorkflowId('web')),
    'protectMachine-agent-routing',
  );
});

test('osr unprotect of an agent machine whose workflow ended outside OSR: the process server holding the agent removes its tracking, and the disk keeps its bytes', async () => {
  await sh('/etc/init.d/osr-agent start');
  await pollFor(async () => ((await agent()).state === 'connected' ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 1000,
    failure: () => new Error('the agent is not connected 60 s after its service started'),
  });
  // Since the re-enroll the agent is at the other listener; the site's queue has both servers.
  assert.equal((await agent()).listener, otherListener);
  assert.match(await sh('dmsetup table'), / era /);
  const bytes = (await sh('sha256sum /dev/mapper/osr-vdb')).split(' ')[0];
  await stack.client.workflow.getHandle(protectWorkflowId('web')).terminate('ended by the test');
  const r = await osr(['unprotect', 'web']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^web: disabled/);
  const query = `OsrJobKind = 'unprotect' AND OsrMachine = 'web'`;
  const cleanup = await pollFor(
    async () => {
      for await (const wf of stack.client.workflow.list({ query })) return wf.workflowId;
      return undefined;
    },
    { timeoutMs: 30_000, intervalMs: 250, failure: () => new Error('no endProtection workflow for web') },
  );
  const handle = stack.client.workflow.getHandle(cleanup);
  assert.deepEqual(await handle.result(), { trackingRemoved: true, replicaDeleted: true, notes: [] });
  const removal = (await scheduledActivities(stack.client, cleanup)).filter(
    (a) => a.name === 'disableTracking',
  );
  assert.deepEqual(
    removal.map((a) => a.queue),
    [agentListenerQueue(otherListener)],
  );
  // In the machine: no era or snapshot target left, no change log, and vdb holds what the
  // machine saw through the stack.
  assert.doesNotMatch(await sh('dmsetup table'), / era | snapshot/);
  assert.doesNotMatch(await sh('ls /run/osr-agent /var/lib/osr-agent 2>/dev/null || true'), /vdb\.era/);
  assert.equal((await sh('sha256sum /dev/vdb')).split(' ')[0], bytes);
  assert.equal(await ctx.vault.machine('web'), undefined, 'the registration is gone');
  assert.deepEqual(await ctx.vault.points('web'), [], 'its points are gone');
  await assertReplays(handle, 'endProtection-agent');
});
