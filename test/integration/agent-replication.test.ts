// Replication through the Mobility agent, with the real parts: the agent test guest under QEMU
// (reached only over SSH), the agent pushed by `osr agent install`, its device-mapper stack (era
// over snapshot-origin over vdb) and snapshots, a real process-server worker holding the agent's
// connection, Temporal and Azurite. The first point (protected with the dashboard's Protect button
// in headless Chromium) is the disk byte for byte; under a workload of numbered records each point
// holds exactly the records 1..k; the agent killed with -9 while a point is frozen loses nothing
// and replication goes on by itself. `osr unprotect` takes the agent's stack down, leaving the disk's
// bytes, and the machine protected again starts over with a full sync.
// The machine stands in for a VMware VM: vcsim (govmomi's vCenter simulator) is added as host vc1
// and simulates no guests, so its VM DC0_H0_VM0 is mapped to this QEMU guest with
// `osr agent install --vm vc1/DC0_H0_VM0 --ssh <guest>`; the agent keeps the VM link.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startApiServer, type ApiServer } from '../../api/server';
import { createLogger } from '../../lib/config/logger';
import { ControlContext } from '../../operations/context';
import { listPoints } from '../../operations/machines';
import type { RecoveryPoint } from '../../shared/replication-types';
import { freePort } from '../../lib/process/ports';
import fs from 'node:fs';
import path from 'node:path';
import { onAgentProcess, startAgentWorkers } from '../helpers/agent-fixture';
import { startAgentGuest, type AgentGuest } from '../helpers/agent-guest';
import { assertRefused, cliFor } from '../helpers/cli';
import { openDashboardTab } from '../helpers/dashboard-tab';
import { pollFor } from '../helpers/poll';
import { exportedImage, recordedFreezes } from '../helpers/protection';
import { recordsOf, recordWorkload } from '../helpers/agent-records';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { certificateFingerprint, powerOff, startVcsim, type Vcsim } from '../helpers/vcsim';

const MiB = 1024 * 1024;
const DATA_DISK = 24 * MiB;
/** Record n is written at sector BASE + n of the data disk. */
const BASE = 2048;
let stack: TestStack;
let guest: AgentGuest;
let ctx: ControlContext;
let agentId: string;
let vcsim: Vcsim;
let api: ApiServer;
const token = randomBytes(32).toString('base64url');
const osr = cliFor(() => stack.env);
/** The vcsim VM the guest stands in for, and one powered off through vcsim's API. */
const VM = 'DC0_H0_VM0';
const POWERED_OFF = 'DC0_H0_VM1';

async function sh(command: string, timeoutMs?: number): Promise<string> {
  const r = await guest.ssh(command, timeoutMs);
  assert.equal(r.code, 0, `${command}: ${r.stderr}`);
  return r.stdout;
}

const points = (): Promise<RecoveryPoint[]> => listPoints(ctx, 'web');

/** Waits until the machine has a point for which `ok` holds. */
function pointWhere(
  ok: (p: RecoveryPoint, all: RecoveryPoint[]) => boolean,
  what: string,
): Promise<RecoveryPoint> {
  return pollFor(async () => (await points()).find((p, _i, all) => ok(p, all)), {
    timeoutMs: 180_000,
    intervalMs: 2000,
    failure: (last) => new Error(`no point ${what} within 180 s (${String(last)})`),
  }).catch(async (err: Error) => {
    const status = await osr(['status', 'web', '--json']);
    throw new Error(`${err.message}; status: ${status.stdout.slice(0, 3000)} ${status.stderr}`);
  });
}

const recordsOfPoint = (point: RecoveryPoint) => recordsOf(ctx, point, BASE);

before(async () => {
  const agentPort = await freePort();
  [stack, guest] = await Promise.all([
    startTestStack(),
    startAgentGuest({ hostname: 'web-1', diskSizes: [8 * MiB, DATA_DISK], bootTimeoutMs: 240_000 }),
  ]);
  ctx = new ControlContext(stack.config);
  await Promise.all([
    startAgentWorkers(stack, agentPort),
    // The vCenter's own process server (discovery runs on its host's queue); no agent listener.
    stack.startWorker(
      'process-server',
      { OSR_PROCESS_SERVER_HOSTS: 'vc1', OSR_AGENT_PORT: '0' },
      { name: 'process-server-vc1' },
    ),
    startVcsim(stack.stateDir).then((v) => (vcsim = v)),
  ]);
  const thumbprint = await certificateFingerprint(vcsim.port);
  await powerOff(vcsim.url, thumbprint, POWERED_OFF);
  const passwordFile = path.join(stack.stateDir, 'vc-password');
  fs.writeFileSync(passwordFile, 'secret\n', { mode: 0o600 });
  const added = await osr([
    ...['host', 'add', 'vc1', '--vcenter', vcsim.url, '--user', 'admin'],
    ...['--password-file', passwordFile, '--thumbprint', thumbprint],
  ]);
  assert.equal(added.code, 0, added.stderr);
  const policy = await osr([
    'policy',
    'create',
    'agent',
    '--crash-every',
    '10s',
    '--app-every',
    '0',
    '--rpo',
    '5m',
  ]);
  assert.equal(policy.code, 0, policy.stderr);
  api = await startApiServer({
    ...{ config: stack.config, token, host: '127.0.0.1', port: 0, ctx },
    logger: createLogger('api-test', 'warn'),
  });
});

after(async () => {
  await api?.close();
  await guest?.stop();
  await vcsim?.stop();
  await stack?.stop();
});

const installVm = (vm: string, ...extra: string[]) =>
  osr([
    ...['agent', 'install', '--vm', vm, '--key', guest.keyFile],
    ...['--host-key-fingerprint', guest.hostKeyFingerprint, ...extra, '--json'],
  ]);

interface DiscoveredJson {
  host: string;
  name: string;
  agentId?: string;
  protectedAs?: string;
  changeTracking: { possible: boolean; reason?: string };
  details?: Record<string, string>;
}
const discovered = async (): Promise<DiscoveredJson[]> => {
  const r = await osr(['discover', '--host', 'vc1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { machines: DiscoveredJson[] }).machines;
};

test('agent install refuses an --ssh that is not user@host, and --vm an unknown host or VM, a powered-off VM and a VM with no guest IP, recording nothing', async () => {
  assertRefused(await installVm('vc9/x', '--ssh', guest.sshTarget), 4, /no host named vc9; known hosts: vc1/);
  assertRefused(
    await installVm('vc1/nope', '--ssh', guest.sshTarget),
    4,
    /vCenter host vc1 has no VM nope; it has DC0_C0_RP0_VM0, .*DC0_H0_VM0/,
  );
  assertRefused(
    await installVm(`vc1/${POWERED_OFF}`, '--ssh', guest.sshTarget),
    2,
    new RegExp(`${POWERED_OFF} on vc1 is poweredOff: power it on`),
  );
  // vcsim simulates no guests: VMware Tools reports no IP for its VMs.
  assertRefused(
    await installVm(`vc1/${VM}`),
    2,
    new RegExp(`VMware Tools reports no IP for ${VM}: give --ssh root@<address>`),
  );
  assertRefused(
    await osr(['agent', 'install', '--ssh', 'web-7.example.net', '--key', guest.keyFile]),
    2,
    /--ssh "web-7.example.net" is not user@host or user@host:port/,
  );
  const listed = await osr(['agent', 'list', '--json']);
  assert.deepEqual(JSON.parse(listed.stdout), []);
  assert.match((await guest.ssh('ls /opt/osr-agent 2>&1 || true')).stdout, /No such file/);
});

test('agent install --vm --ssh: the agent keeps the VM link, and osr discover shows the VM protectable through it', async () => {
  const vm = (await discovered()).find((m) => m.name === VM);
  assert.ok(vm?.details?.vmId, `vcsim lists ${VM} with its moref`);
  const instanceUuid = vm.details.instanceUuid ?? '';
  assert.match(instanceUuid, /^[0-9a-f]{8}-[0-9a-f-]{27}$/);
  assert.equal(vm.agentId, undefined);
  const installed = await installVm(`vc1/${VM}`, '--ssh', guest.sshTarget);
  assert.equal(installed.code, 0, `${installed.stdout}\n${installed.stderr}`);
  agentId = (JSON.parse(installed.stdout) as { id: string }).id;
  const [agent, ...others] = JSON.parse((await osr(['agent', 'list', '--json'])).stdout) as Array<{
    id: string;
    vm?: Record<string, string>;
  }>;
  assert.equal(others.length, 0);
  assert.equal(agent?.id, agentId);
  assert.deepEqual(agent.vm, {
    host: 'vc1',
    vm: VM,
    moref: vm.details.vmId,
    instanceUuid,
    address: '127.0.0.1',
  });
  const shown = await osr(['agent', 'show', agentId]);
  assert.match(shown.stdout, new RegExp(`VMware VM vc1/${VM} \\(${vm.details.vmId}`));
  const after = await discovered();
  const linked = after.find((m) => m.name === VM);
  assert.equal(linked?.agentId, agentId);
  assert.equal(linked.changeTracking.possible, false);
  assert.match(linked.changeTracking.reason ?? '', new RegExp(`protectable through agent ${agentId}`));
  assert.deepEqual(
    after.filter((m) => m.agentId).map((m) => m.name),
    [VM],
  );
});

test('protect --agent refuses an unknown agent or disk with the fix, and records nothing', async () => {
  const unknown = await osr(['protect', 'web', '--agent', 'ag-000000000000', '--policy', 'agent']);
  assertRefused(unknown, 2, /no agent ag-000000000000|ag-000000000000.*osr agent list/);
  const malformed = await osr(['protect', 'web', '--agent', 'web-1', '--policy', 'agent']);
  assertRefused(malformed, 2, /agent id "web-1" is not valid: use ag- and 12 hex digits/);
  const noDisk = await osr(['protect', 'web', '--agent', agentId, '--disks', 'vdz', '--policy', 'agent']);
  assertRefused(noDisk, 2, /has no writable disk vdz; it has vda, vdb: fix --disks/);
  const list = await osr(['status', '--json']);
  assert.equal(list.code, 0, list.stderr);
  assert.doesNotMatch(list.stdout, /"web"/);
});

/** Protects the linked VM as `web` with the dashboard's Protect button (headless Chromium). */
async function protectFromDashboard(): Promise<void> {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const { tab, errors } = await openDashboardTab(browser, api.url, token);
    const row = tab.locator(`tr[data-discovered="vc1/${VM}"]`);
    await row.waitFor({ timeout: 60_000 });
    await row.locator('button[data-action="protect"]').click();
    const dialog = tab.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    assert.match(await dialog.innerText(), new RegExp(`Protect ${VM} through agent ${agentId}`));
    assert.match(await dialog.innerText(), /vdb 24\.0 MiB/);
    await tab.locator('input[aria-label="protect as"]').fill('web');
    await tab.locator('input[aria-label="policy"]').fill('agent');
    await tab.locator('input[data-disk="vdb"]').check();
    await tab.locator('#confirm-ok').click();
    await pollFor(async () => ((await ctx.vault.machine('web')) ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 500,
      failure: () => new Error('the Protect click recorded no machine web within 30 s'),
    });
    assert.deepEqual(errors, [], 'no script error on the page');
  } finally {
    await browser.close();
  }
}

test('the first point of an agent machine, protected with the dashboard, is its disk byte for byte', async () => {
  // vdb filled with random data before protection; nothing writes to it until the point exists.
  await sh(`dd if=/dev/urandom of=/dev/vdb bs=1M count=${DATA_DISK / MiB} conv=fsync 2>/dev/null`, 120_000);
  const before = (await sh('sha256sum /dev/vdb')).split(' ')[0];
  await protectFromDashboard();
  const machine = await ctx.vault.machine('web');
  assert.deepEqual(machine?.source, { type: 'agent', agentId, disks: ['vdb'] });
  assert.equal(machine.policy, 'agent');
  const first = await pointWhere(() => true, 'after the initial sync');
  const image = await exportedImage(ctx, first, 'vdb');
  assert.equal(image.length, DATA_DISK);
  assert.equal(createHash('sha256').update(image).digest('hex'), before);
  // The stack is in place and the disk reads the same through it.
  assert.equal((await sh('sha256sum /dev/mapper/osr-vdb')).split(' ')[0], before);
  // Discovery now names the VM's protection, so the dashboard offers no second Protect.
  assert.equal((await discovered()).find((m) => m.name === VM)?.protectedAs, 'web');
});

test('under a record workload every point holds records 1..k; an agent killed with -9 loses none', async () => {
  const start = (await points()).length;
  await sh(
    `cat > /tmp/workload.sh <<'EOF'\n${recordWorkload(BASE)}\nEOF\nsetsid sh /tmp/workload.sh </dev/null >/dev/null 2>&1 &`,
  );
  const acked = async () => Number((await sh('cat /tmp/acked 2>/dev/null || echo 0')).trim());
  await pollFor(async () => ((await acked()) >= 5 ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 1000,
    failure: () => new Error('the workload acknowledged no record within 60 s'),
  });
  await pointWhere((_p, all) => all.length >= start + 1, 'under the workload');
  // Mid-cycle: a point is frozen in the agent (its state file lists it) when the agent is killed.
  await pollFor(
    async () =>
      (await sh('grep -c \'"pitId"\' /var/lib/osr-agent/tracking.json || true')).trim() !== '0'
        ? true
        : undefined,
    {
      timeoutMs: 90_000,
      intervalMs: 300,
      failure: () => new Error('no frozen point seen in the agent within 90 s'),
    },
  );
  const killed = await sh(onAgentProcess('kill -9'));
  assert.match(killed.trim(), /^\d+$/, `one agent process killed: ${killed}`);
  const killedAt = new Date().toISOString();
  // Its service loop starts it again; it connects again by itself.
  await pollFor(
    async () =>
      Number((await sh('grep -c "connected to" /var/log/osr-agent.log')).trim()) >= 2 ? true : undefined,
    {
      timeoutMs: 120_000,
      intervalMs: 2000,
      failure: () => new Error('the agent did not reconnect within 120 s'),
    },
  ).catch(async (err: Error) => {
    const seen = await guest.ssh(
      'tail -n 20 /var/log/osr-agent.log; ps; dmsetup info -c; cat /var/lib/osr-agent/tracking.json',
    );
    throw new Error(`${err.message}:\n${seen.stdout}\n${seen.stderr}`);
  });
  await pointWhere((p) => p.instant > killedAt, 'after the agent was killed');
  await sh('touch /tmp/stop');
  await pollFor(async () => ((await guest.ssh('test -e /tmp/stopped')).code === 0 ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 1000,
    failure: () => new Error('the workload did not stop'),
  });
  const total = await acked();
  const stoppedAt = new Date().toISOString();
  const last = await pointWhere((p) => p.instant > stoppedAt, 'after the workload stopped');
  // Nothing acknowledged is lost: the point after the workload holds every record.
  assert.equal(await recordsOfPoint(last), total);
  // Every point under the workload is a prefix of what was acknowledged.
  const all = await points();
  let previous = 0;
  for (const p of all.slice(start).sort((a, b) => a.instant.localeCompare(b.instant))) {
    const k = await recordsOfPoint(p);
    assert.ok(
      k <= total && k >= previous,
      `point ${p.id}: ${k} records, previous ${previous}, acknowledged ${total}`,
    );
    previous = k;
  }
});

test('osr unprotect: the agent takes its stack down and vdb keeps its bytes; protected again, the first point is the disk', async () => {
  const through = (await sh('sha256sum /dev/mapper/osr-vdb')).split(' ')[0];
  const r = await osr(['unprotect', 'web']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^web: disabled/);
  // In the machine: no era or snapshot target left, and vdb holds what it read through the stack.
  assert.doesNotMatch(await sh('dmsetup table'), / era | snapshot/);
  assert.equal((await sh('sha256sum /dev/vdb')).split(' ')[0], through);
  assert.equal(await ctx.vault.machine('web'), undefined, 'the registration is gone');
  assert.deepEqual(await ctx.vault.points('web'), [], 'its points are gone');
  assert.equal((await discovered()).find((m) => m.name === VM)?.protectedAs, undefined);
  // Protected again, with the CLI: a new stack and a full sync, its first point the disk as it is.
  const again = await osr(['protect', 'web', '--agent', agentId, '--disks', 'vdb', '--policy', 'agent']);
  assert.equal(again.code, 0, `${again.stdout}\n${again.stderr}`);
  const first = await pointWhere(() => true, 'after protecting again');
  const image = await exportedImage(ctx, first, 'vdb');
  assert.equal(createHash('sha256').update(image).digest('hex'), through);
  assert.equal((await recordedFreezes(ctx, 'protect/web'))[0]?.disks[0]?.mode, 'full');
  assert.match(await sh('dmsetup table'), /^osr-vdb: .* era /m);
});
