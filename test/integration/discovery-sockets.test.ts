// A directory of QEMU monitor sockets as a host, served by a process server started for it
// (--host kvm1; no process server of the site runs, so everything here goes through the host's
// own queue): discovery through the CLI and the API of two real qemu-storage-daemons (a qcow2
// disk and a raw one), a machine protected on the host, and the host's only process server
// killed: the machine's status and the alerts say so within one heartbeat interval of the server
// going stale, and GET /v1/hosts (the dashboard) names the host.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import type { ApiServer } from '../../api/server';
import { stopPid } from '../../lib/process/managed-process';
import { createQcow2, startStorageDaemon, type StorageDaemon } from '../../lib/qemu/storage-daemon';
import { listAlerts } from '../../operations/alerts';
import { ControlContext } from '../../operations/context';
import { machineStatus } from '../../operations/machines';
import type { DiscoveredMachine } from '../../shared/host-types';
import { startTestApi } from '../helpers/api-client';
import { assertRefused, cliFor } from '../helpers/cli';
import { waitForStatus } from '../helpers/protection';
import { assertReplays } from '../helpers/replay';
import { createManualPolicy } from '../helpers/testbed';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { openDashboardTab } from '../helpers/dashboard-tab';

const MiB = 1024 * 1024;
const HEARTBEAT_SECONDS = 2;
const STALE_SECONDS = 4;

describe('a socket-directory host and its own process server', { timeout: 600_000 }, () => {
  let stack: TestStack;
  let ctx: ControlContext;
  let api: ApiServer;
  let dir: string;
  let sockets: string;
  const daemons: StorageDaemon[] = [];
  const token = 'discovery-sockets-test-token-0123456789';
  const osr = cliFor(() => stack.env);

  before(async () => {
    stack = await startTestStack({
      extraEnv: {
        OSR_HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS),
        OSR_HEALTH_STALE_SECONDS: String(STALE_SECONDS),
      },
    });
    await Promise.all([
      stack.startWorker('control'),
      stack.startWorker('cloud-applier'),
      stack.startWorker('process-server', { OSR_PROCESS_SERVER_HOSTS: 'kvm1' }),
    ]);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-sockdir-'));
    sockets = path.join(dir, 'run');
    fs.mkdirSync(sockets);
    // web: a 64 MiB qcow2 disk; db: a 32 MiB raw one. Each daemon's monitor socket is moved into
    // the directory as <machine>.qmp (a bound socket keeps answering at its new name).
    await createQcow2(path.join(dir, 'web.qcow2'), 64 * MiB);
    fs.writeFileSync(path.join(dir, 'db.raw'), '');
    fs.truncateSync(path.join(dir, 'db.raw'), 32 * MiB);
    for (const [name, image] of [
      ['web', 'web.qcow2'],
      ['db', 'db.raw'],
    ] as const) {
      const d = await startStorageDaemon({ stateDir: path.join(dir, name), images: [path.join(dir, image)] });
      fs.renameSync(d.qmpSocket, path.join(sockets, `${name}.qmp`));
      daemons.push(d);
    }
    fs.writeFileSync(path.join(sockets, 'README'), 'not a socket');
    ctx = new ControlContext(stack.config);
    await createManualPolicy(ctx);
    api = await startTestApi({ stack, ctx, stop: async () => undefined }, token, 'discovery-sockets');
  });
  after(async () => {
    await api?.close();
    await ctx?.close();
    await stack?.stop();
    for (const d of daemons) await d.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const discovered = async (): Promise<DiscoveredMachine[]> => {
    const res = await osr(['discover', '--json']);
    assert.equal(res.code, 0, res.stderr);
    return (JSON.parse(res.stdout) as { machines: DiscoveredMachine[] }).machines;
  };

  test('a directory missing on the host, or a host no process server serves: refused, nothing registered', async () => {
    assertRefused(
      await osr(['host', 'add', 'kvm1', '--sockets', path.join(dir, 'nowhere')]),
      2,
      /no directory .*nowhere/,
    );
    assertRefused(
      await osr(['host', 'add', 'kvm1', '--sockets', 'relative/dir', '--vcenter', 'https://x/sdk']),
      2,
      /exactly one of/,
    );
    // Its process server is given 5 s, not the default 30 s, to answer.
    const noServer = await osr(['host', 'add', 'kvm9', '--sockets', sockets, '--timeout', '5s']);
    assertRefused(noServer, 3, /no process server of host kvm9 answered within 5 s .*--host kvm9/);
    assertRefused(
      await osr(['host', 'add', 'kvm9', '--sockets', sockets, '--timeout', '1s']),
      2,
      /--timeout: 5 s to 10 min/,
    );
    assert.deepEqual(JSON.parse((await osr(['host', 'list', '--json'])).stdout), []);
  });

  test('added, its machines are discovered with disks, formats and whether tracking persists', async () => {
    const res = await osr(['host', 'add', 'kvm1', '--sockets', sockets]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /2 machine\(s\) found/);
    const machines = await discovered();
    assert.deepEqual(machines.map((m) => m.name).sort(), ['db', 'web']);
    const web = machines.find((m) => m.name === 'web') as DiscoveredMachine;
    const db = machines.find((m) => m.name === 'db') as DiscoveredMachine;
    assert.deepEqual(
      web.disks.map((d) => [d.diskId, d.sizeBytes, d.format, d.persistentTracking]),
      [['disk0', 64 * MiB, 'qcow2', true]],
    );
    assert.deepEqual(
      db.disks.map((d) => [d.diskId, d.sizeBytes, d.format, d.persistentTracking]),
      [['disk0', 32 * MiB, 'raw', false]],
    );
    assert.equal(web.changeTracking.possible, true);
    assert.equal(db.changeTracking.possible, true);
    assert.match(db.changeTracking.reason ?? '', /raw .*lost when the process restarts/);
    assert.equal(web.protectedAs, undefined);
    assert.match((await osr(['servers'])).stdout, /process-server .*hosts kvm1/);
    const table = await osr(['discover', '--host', 'kvm1']);
    assert.match(table.stdout, /kvm1\s+web\s+running\s+disk0 64M qcow2\s+yes\s+-/);
  });

  test("a machine protected on the host is served by the host's process server, and discovery says so", async () => {
    const web = daemons[0] as StorageDaemon;
    const res = await osr([
      'protect',
      'web',
      '--host',
      'kvm1',
      '--qmp',
      path.join(sockets, 'web.qmp'),
      '--nbd',
      web.nbdSocket,
      '--policy',
      'manual',
    ]);
    assert.equal(res.code, 0, res.stderr);
    // No process server of the site runs: the first point can only come from the host's.
    await waitForStatus(ctx, 'web', (s) => s.state === 'protected' && s.lastPoint !== undefined, 180_000);
    const fromApi = (await (
      await fetch(`${api.url}/v1/discover`, { headers: { Authorization: `Bearer ${token}` } })
    ).json()) as { machines: DiscoveredMachine[] };
    assert.equal(fromApi.machines.find((m) => m.name === 'web')?.protectedAs, 'web');
    assert.equal(fromApi.machines.find((m) => m.name === 'db')?.protectedAs, undefined);
    assertRefused(await osr(['host', 'remove', 'kvm1']), 5, /serves protected machine web/);
    // The host-queue path (patched 'host-queue') beside the recorded histories.
    await assertReplays(stack.client.workflow.getHandle('protect/web'), 'protectMachine-host-queue');
  });

  test('the dashboard shows the host and its discovered machines; Protect starts one with a confirmed click', async () => {
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    try {
      const { tab, errors } = await openDashboardTab(browser, api.url, token);
      await tab.locator('tr[data-host="kvm1"]', { hasText: '1 live' }).waitFor({ timeout: 30_000 });
      const web = tab.locator('tr[data-discovered="kvm1/web"]');
      const db = tab.locator('tr[data-discovered="kvm1/db"]');
      await db.waitFor({ timeout: 60_000 });
      assert.match(await web.innerText(), /disk0 64\.0 MiB qcow2/);
      assert.equal(await web.locator('button[data-action="protect"]').count(), 0, 'web is protected already');
      await db.locator('button[data-action="protect"]').click();
      const dialog = tab.locator('dialog#confirm');
      await dialog.waitFor({ state: 'visible' });
      assert.match(await dialog.innerText(), /Protect db on kvm1/);
      await tab.locator('input[aria-label="NBD socket"]').fill((daemons[1] as StorageDaemon).nbdSocket);
      await tab.locator('#confirm-ok').click();
      await waitForStatus(ctx, 'db', (s) => s.state === 'protected' && s.lastPoint !== undefined, 180_000);
      assert.equal((await ctx.vault.machine('db'))?.host, 'kvm1');
      assert.deepEqual(errors, [], 'no script error on the page');
    } finally {
      await browser.close();
    }
  });

  test("the host's only process server killed: status, alerts and the host list say so within one heartbeat", async () => {
    const hostAlert = async () =>
      (await machineStatus(ctx, 'web')).alerts.find((a) => a.kind === 'host-server-lost');
    assert.equal(await hostAlert(), undefined, 'no alert while the server runs');
    const lastBeat = Date.now();
    await stack.killWorker('process-server');
    // Stale once its last heartbeat is STALE_SECONDS old; said within one heartbeat after that.
    const deadline = lastBeat + (STALE_SECONDS + HEARTBEAT_SECONDS) * 1000;
    let seen: number | undefined;
    while (Date.now() < deadline + 10_000) {
      if (await hostAlert()) {
        seen = Date.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(seen !== undefined, 'the machine status names the lost host server');
    assert.ok(seen <= deadline, `said ${(seen - deadline) / 1000} s after the deadline`);
    const status = await machineStatus(ctx, 'web');
    assert.equal(status.health?.level, 'critical');
    assert.match(
      status.alerts.find((a) => a.kind === 'host-server-lost')?.message ?? '',
      /process server of host kvm1 is stale.*--host kvm1/,
    );
    const alerts = await listAlerts(ctx);
    assert.ok(alerts.alerts.some((a) => a.machine === 'web' && a.kind === 'host-server-lost'));
    const hosts = (await (
      await fetch(`${api.url}/v1/hosts`, { headers: { Authorization: `Bearer ${token}` } })
    ).json()) as {
      hosts: Array<{ name: string; serverProblem?: string; servers: { live: string[]; stale: string[] } }>;
    };
    const kvm1 = hosts.hosts.find((h) => h.name === 'kvm1');
    assert.deepEqual(kvm1?.servers.live, []);
    assert.equal(kvm1?.servers.stale.length, 1);
    assert.match(kvm1?.serverProblem ?? '', /host kvm1/);
    const cli = await osr(['status', 'web']);
    assert.match(cli.stdout + cli.stderr, /host kvm1/);

    // A new server clears it; stopping that one cleanly (its heartbeat document removed) brings
    // the alert back within one heartbeat interval.
    const again = await stack.startWorker('process-server', { OSR_PROCESS_SERVER_HOSTS: 'kvm1' });
    while (await hostAlert()) await new Promise((r) => setTimeout(r, 200));
    await stopPid(again.pid);
    const stoppedAt = Date.now();
    let back: number | undefined;
    while (!back && Date.now() < stoppedAt + 30_000) {
      if (await hostAlert()) back = Date.now();
      else await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(back !== undefined, 'the alert is back after a clean stop');
    assert.ok(back - stoppedAt <= HEARTBEAT_SECONDS * 1000, `said ${back - stoppedAt} ms after the stop`);
  });
});
