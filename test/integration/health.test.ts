// A machine's health (shared/machine-health.ts) everywhere it is shown, on a real stack:
// - a machine whose source is killed is critical with the reason in `osr status --json`, the API
//   and the OsrHealth search attribute, and healthy again once the source is back and a point is cut;
//   with a tight RPO threshold it turns warning, then critical, as its point grows late;
// - a consistency group's failed cut (a member whose writes cannot be held) is in the alert list
//   (source group, folded with a count), in the members' status and health, and clears with the
//   next good cut;
// - a protectMachine terminated from the Temporal client shows as ended-outside-osr in status and
//   alerts, and `osr unprotect` cleans it up.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { ApiServer } from '../../api/server';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { createQcow2, startStorageDaemon, type StorageDaemon } from '../../lib/qemu/storage-daemon';
import { listAlerts } from '../../operations/alerts';
import * as groups from '../../operations/groups';
import * as machines from '../../operations/machines';
import { createPolicy } from '../../operations/policies';
import { protectWorkflowId, type MachineStatus } from '../../shared/contracts/protect-machine';
import { groupWorkflowId } from '../../shared/group-types';
import { startTestApi } from '../helpers/api-client';
import { runCli, type CliResult } from '../helpers/cli';
import { untilHealthAttribute } from '../helpers/health-attribute';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const token = randomBytes(32).toString('base64url');
const SRC = 'hl-src';
let bed: Testbed;
let api: ApiServer;
let dir: string;
let image: string;
let daemon: StorageDaemon | undefined;
const members: TestMachine[] = [];

before(async () => {
  bed = await startTestbed();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-hl-'));
  image = path.join(dir, 'disk0.qcow2');
  await createQcow2(image, 8 * MiB);
  daemon = await startStorageDaemon({ stateDir: dir, images: [image] });
  const nbd = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'disk0' });
  await nbd.write(0, pseudoRandom(2 * MiB, 3));
  await nbd.flush();
  await nbd.close();
  api = await startTestApi(bed, token, 'health-test');
});

after(async () => {
  await api?.close();
  await daemon?.stop();
  for (const m of members) await m.stop();
  await bed?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const osr = (args: string[]): Promise<CliResult> => runCli(args, bed.stack.env);

async function apiStatus(name: string): Promise<MachineStatus> {
  const res = await fetch(`${api.url}/v1/machines/${name}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 200);
  return (await res.json()) as MachineStatus;
}

const untilHealth = async (machine: string, level: 'healthy' | 'critical') =>
  untilHealthAttribute(await bed.ctx.client(), machine, level);

test('a machine whose source is killed is critical everywhere, and healthy once a point is cut again', async () => {
  const { ctx } = bed;
  await machines.protect(ctx, {
    name: SRC,
    qmpSocket: daemon!.qmpSocket,
    nbdSocket: daemon!.nbdSocket,
    policy: 'manual',
  });
  const ok = await waitForStatus(ctx, SRC, (s) => s.state === 'protected' && s.lastPoint !== undefined);
  assert.deepEqual(ok.health, { level: 'healthy', reasons: [] });
  await untilHealth(SRC, 'healthy');

  process.kill(daemon!.pid, 'SIGKILL');
  daemon = undefined;
  // The manual policy cuts no scheduled point: asking for one finds the source gone.
  await assert.rejects(machines.takePoint(ctx, SRC, { kind: 'crash' }));
  const down = await waitForStatus(ctx, SRC, (s) => s.health?.level === 'critical', 60_000);
  assert.match(down.health?.reasons[0] ?? '', /^source unreachable since .*failed cycle/);

  const cli = await osr(['status', SRC, '--json']);
  assert.equal(cli.code, 0, cli.stderr);
  const fromCli = JSON.parse(cli.stdout) as MachineStatus;
  assert.equal(fromCli.health?.level, 'critical');
  assert.match(fromCli.health?.reasons.join('\n') ?? '', /source unreachable/);
  const table = await osr(['status']);
  assert.match(table.stdout, /HEALTH/);
  assert.match(table.stdout, new RegExp(`${SRC}\\s+protected\\s+critical`));
  const fromApi = await apiStatus(SRC);
  assert.equal(fromApi.health?.level, 'critical');
  assert.match(fromApi.health?.reasons[0] ?? '', /source unreachable/);
  await untilHealth(SRC, 'critical');
  const metrics = await (
    await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })
  ).text();
  assert.match(metrics, new RegExp(`osr_machine_health\\{machine="${SRC}"\\} 2`));

  // The source is back and a point is cut: healthy again, in the status and the search attribute.
  daemon = await startStorageDaemon({ stateDir: dir, images: [image] });
  await machines.takePoint(ctx, SRC, { kind: 'crash' });
  const back = await machines.machineStatus(ctx, SRC);
  assert.deepEqual(back.health, { level: 'healthy', reasons: [] });
  assert.equal((await apiStatus(SRC)).health?.level, 'healthy');
  await untilHealth(SRC, 'healthy');
});

test('a point growing late turns the machine warning past the threshold, critical past twice it', async () => {
  const { ctx } = bed;
  await createPolicy(ctx, {
    name: 'tight',
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 3,
  });
  await machines.takePoint(ctx, SRC, { kind: 'crash' });
  await machines.changePolicy(ctx, SRC, 'tight');
  const warning = await waitForStatus(ctx, SRC, (s) => s.health?.level !== 'healthy', 30_000);
  assert.equal(warning.health?.level, 'warning', JSON.stringify(warning.health));
  assert.match(warning.health?.reasons[0] ?? '', /^RPO \d+ s is past the threshold of 3 s$/);
  assert.ok((warning.rpoSeconds ?? 0) > 3 && (warning.rpoSeconds ?? 0) <= 6);
  const critical = await waitForStatus(ctx, SRC, (s) => s.health?.level === 'critical', 30_000);
  assert.match(
    critical.health?.reasons[0] ?? '',
    /^no recovery point for \d+ s: more than 2× the RPO threshold/,
  );
  // The rpo-exceeded alert is not counted twice.
  assert.equal(critical.health?.reasons.length, 1, JSON.stringify(critical.health));
  await untilHealth(SRC, 'critical');
  await machines.changePolicy(ctx, SRC, 'manual');
  await untilHealth(SRC, 'healthy');
  await assertReplays(
    (await ctx.client()).workflow.getHandle(protectWorkflowId(SRC)),
    'protectMachine-health',
  );
});

test("a group's failed cut is in the alert list and its members' status, folded, and cleared by a good cut", async () => {
  const { ctx } = bed;
  // Members are storage daemons whose writes are held by a pre command: it fails while `flag` exists.
  const flag = path.join(dir, 'cannot-hold');
  for (const name of ['hl-g1', 'hl-g2']) {
    const vm = await startTestMachine({ sizes: [MiB] });
    members.push(vm);
    await machines.protect(ctx, {
      name,
      qmpSocket: vm.daemon.qmpSocket,
      nbdSocket: vm.daemon.nbdSocket,
      policy: 'manual',
      quiesce: { pre: `test ! -e ${flag}`, post: 'true' },
    });
  }
  await waitForStatus(ctx, 'hl-g1', (s) => s.state === 'protected');
  await waitForStatus(ctx, 'hl-g2', (s) => s.state === 'protected');
  await groups.createGroup(ctx, { name: 'hl-grp', machines: ['hl-g1', 'hl-g2'], intervalSeconds: 3600 });
  await groups.takeGroupPoint(ctx, 'hl-grp');

  fs.writeFileSync(flag, '');
  await assert.rejects(groups.takeGroupPoint(ctx, 'hl-grp'), /could not hold the members' writes/);
  await assert.rejects(groups.takeGroupPoint(ctx, 'hl-grp'), /could not hold the members' writes/);
  const listed = (await listAlerts(ctx)).alerts.filter((a) => a.group === 'hl-grp');
  assert.equal(listed.length, 1, `one alert per problem: ${JSON.stringify(listed)}`);
  assert.equal(listed[0]?.source, 'group');
  assert.equal(listed[0]?.kind, 'group-cut-failed');
  assert.equal(listed[0]?.count, 2);
  assert.deepEqual(listed[0]?.machines, ['hl-g1', 'hl-g2']);
  assert.match(listed[0]?.message ?? '', /pre \(hold\) command of hl-g\d failed/);
  for (const name of ['hl-g1', 'hl-g2']) {
    const status = await machines.machineStatus(ctx, name);
    const alert = status.alerts.find((a) => a.kind === 'group-cut-failed');
    assert.ok(alert, `${name} carries its group's failed cut: ${JSON.stringify(status.alerts)}`);
    assert.equal(alert.subject, 'hl-grp');
    assert.equal(status.health?.level, 'critical');
    assert.match(status.health?.reasons.join('\n') ?? '', /group-cut-failed: group hl-grp/);
    assert.equal((await apiStatus(name)).health?.level, 'critical');
  }

  fs.rmSync(flag);
  await groups.takeGroupPoint(ctx, 'hl-grp');
  assert.deepEqual(
    (await listAlerts(ctx)).alerts.filter((a) => a.group === 'hl-grp'),
    [],
    'a good cut clears the group alert',
  );
  const healed = await machines.machineStatus(ctx, 'hl-g1');
  assert.ok(!healed.alerts.some((a) => a.kind.startsWith('group-')), JSON.stringify(healed.alerts));
  // Healthy but for what a busy test machine may add meanwhile (a storage request retried: warning).
  assert.notEqual(healed.health?.level, 'critical', JSON.stringify(healed.health));
  assert.ok(!healed.health?.reasons.some((r) => /group/.test(r)), JSON.stringify(healed.health));
  await groups.deleteGroup(ctx, 'hl-grp');
  await assertReplays(
    (await ctx.client()).workflow.getHandle(groupWorkflowId('hl-grp')),
    'consistencyGroup-cut-failed',
  );
});

test('a protectMachine terminated outside OSR shows in status and alerts, and osr unprotect cleans it up', async () => {
  const { ctx } = bed;
  const handle = (await ctx.client()).workflow.getHandle(protectWorkflowId(SRC));
  await handle.terminate('stopped from the Temporal UI by mistake');

  const listed = (await machines.listMachines(ctx)).find((m) => m.machine === SRC);
  assert.equal(listed?.ended?.state, 'ended-outside-osr');
  assert.equal(listed?.ended?.closedAs, 'terminated');
  assert.equal(listed?.health?.level, 'critical');
  const table = await osr(['status']);
  assert.match(table.stdout, new RegExp(`${SRC}\\s+ended-outside-osr\\s+critical`));
  const one = await osr(['status', SRC]);
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stdout, /ended-outside-osr/);
  assert.match(one.stdout, /terminated outside OSR \(stopped from the Temporal UI by mistake\)/);
  assert.match(one.stdout, new RegExp(`fix: run \`osr unprotect ${SRC}\``));
  const alert = (await listAlerts(ctx)).alerts.find((a) => a.kind === 'protection-ended');
  assert.equal(alert?.machine, SRC);
  assert.equal(alert?.severity, 'critical');
  assert.match(alert?.message ?? '', /terminated outside OSR/);

  const unprotected = await osr(['unprotect', SRC]);
  assert.equal(unprotected.code, 0, unprotected.stderr);
  assert.match(unprotected.stdout, new RegExp(`${SRC}: disabled`));
  assert.equal(await ctx.vault.machine(SRC), undefined, 'the registration is gone');
  assert.deepEqual(await ctx.vault.points(SRC), [], 'its points are gone');
  assert.equal(
    (await listAlerts(ctx)).alerts.filter((a) => a.machine === SRC).length,
    0,
    'no alert about it remains',
  );
  // The cleanup ran as an endProtection workflow: its history replays (and is kept with the others).
  const client = await ctx.client();
  const query = `OsrJobKind = 'unprotect' AND OsrMachine = '${SRC}'`;
  let cleanup: string | undefined;
  for (const deadline = Date.now() + 30_000; !cleanup && Date.now() < deadline; ) {
    for await (const wf of client.workflow.list({ query })) cleanup = wf.workflowId;
    if (!cleanup) await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(cleanup, `an endProtection workflow for ${SRC}`);
  await assertReplays(client.workflow.getHandle(cleanup), 'endProtection-terminated');
});
