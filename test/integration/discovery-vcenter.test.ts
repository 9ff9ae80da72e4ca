// vCenter discovery against vcsim (govmomi's simulator, a real vim25 SOAP server over HTTPS with a
// self-signed certificate), through the CLI and the API, run by a process server started for the
// host (--host vc1, its own task queue). Its inventory is shaped by flags, so the expected VMs and
// hosts come from the flags, not from OSR; one VM is powered off through the API beforehand.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DiscoveredMachine } from '../../shared/host-types';
import { startTestApi } from '../helpers/api-client';
import { assertRefused, cliFor } from '../helpers/cli';
import { assertReplays } from '../helpers/replay';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { ControlContext } from '../../operations/context';
import { certificateFingerprint, powerOff, startVcsim, type Vcsim } from '../helpers/vcsim';
import type { ApiServer } from '../../api/server';

// -host 2 -vm 3: one cluster of 2 hosts and one standalone host; 3 VMs per resource pool.
const EXPECTED_VMS = [
  'DC0_C0_RP0_VM0',
  'DC0_C0_RP0_VM1',
  'DC0_C0_RP0_VM2',
  'DC0_H0_VM0',
  'DC0_H0_VM1',
  'DC0_H0_VM2',
];
const EXPECTED_HOSTS = ['DC0_C0_H0', 'DC0_C0_H1', 'DC0_H0'];
const POWERED_OFF = 'DC0_H0_VM1';

describe('vCenter discovery (vcsim)', { timeout: 600_000 }, () => {
  let stack: TestStack;
  let vcsim: Vcsim;
  let fingerprint: string;
  let passwordFile: string;
  let emptyPasswordFile: string;
  let api: ApiServer;
  let ctx: ControlContext;
  const token = 'discovery-vcenter-test-token-0123456789';
  const osr = cliFor(() => stack.env);

  before(async () => {
    stack = await startTestStack();
    await Promise.all([
      stack.startWorker('control'),
      stack.startWorker('process-server', { OSR_PROCESS_SERVER_HOSTS: 'vc1' }),
    ]);
    vcsim = await startVcsim(stack.stateDir, ['-host', '2', '-vm', '3']);
    fingerprint = await certificateFingerprint(vcsim.port);
    passwordFile = path.join(stack.stateDir, 'vc-password');
    fs.writeFileSync(passwordFile, 'secret\n', { mode: 0o600 });
    emptyPasswordFile = path.join(stack.stateDir, 'vc-empty-password');
    fs.writeFileSync(emptyPasswordFile, '', { mode: 0o600 });
    await powerOff(vcsim.url, fingerprint, POWERED_OFF);
    ctx = new ControlContext(stack.config);
    api = await startTestApi({ stack, ctx, stop: async () => undefined }, token, 'discovery-vcenter');
  });
  after(async () => {
    await api?.close();
    await ctx?.close();
    await vcsim?.stop();
    await stack?.stop();
  });

  const add = (...extra: string[]) =>
    osr([
      'host',
      'add',
      'vc1',
      '--vcenter',
      vcsim.url,
      '--user',
      'admin',
      '--password-file',
      passwordFile,
      ...extra,
    ]);
  const registeredHosts = async () => JSON.parse((await osr(['host', 'list', '--json'])).stdout) as unknown[];

  test('a self-signed certificate is refused with its fingerprint, and nothing is registered', async () => {
    const res = await add();
    assertRefused(res, 2, /not trusted/);
    assert.ok(res.stderr.includes(fingerprint), `the fingerprint ${fingerprint} is shown: ${res.stderr}`);
    assert.match(res.stderr, /--thumbprint/);
    assert.deepEqual(await registeredHosts(), []);
  });

  test('a pin that does not match is refused, and nothing is registered', async () => {
    const wrong = fingerprint.replace(/^../, fingerprint.startsWith('00') ? '11' : '00');
    const res = await add('--thumbprint', wrong);
    assertRefused(res, 2, /does not match the pinned thumbprint/);
    assert.deepEqual(await registeredHosts(), []);
  });

  test('refused credentials, a wrong path and an unreachable address: clear errors, nothing registered', async () => {
    // vcsim 0.18 accepts any user with a non-empty password and has no flag to require one; an
    // empty password is the login it refuses (a real InvalidLogin fault).
    const creds = await osr([
      'host',
      'add',
      'vc1',
      '--vcenter',
      vcsim.url,
      '--user',
      'admin',
      '--password-file',
      emptyPasswordFile,
      '--thumbprint',
      fingerprint,
    ]);
    assertRefused(creds, 2, /refused the user name or password.*--user and the password in --password-file/);
    const wrongPath = await osr([
      'host',
      'add',
      'vc1',
      '--vcenter',
      vcsim.url.replace('/sdk', '/nothing'),
      '--user',
      'admin',
      '--password-file',
      passwordFile,
      '--thumbprint',
      fingerprint,
    ]);
    assertRefused(wrongPath, 2, /not the vSphere API.*https:\/\/<vcenter>\/sdk/);
    const unreachable = await osr([
      'host',
      'add',
      'vc1',
      '--vcenter',
      'https://127.0.0.1:1/sdk',
      '--user',
      'admin',
      '--password-file',
      passwordFile,
    ]);
    assertRefused(unreachable, 2, /cannot reach 127\.0\.0\.1:1 .*check the address and port/);
    const plainHttp = await osr([
      'host',
      'add',
      'vc1',
      '--vcenter',
      `http://127.0.0.1:${vcsim.port}/sdk`,
      '--user',
      'a',
      '--password-file',
      passwordFile,
    ]);
    assertRefused(plainHttp, 2, /must be an https:\/\/ URL/);
    assert.deepEqual(await registeredHosts(), []);
  });

  test('pinned, the host is added and its inventory discovered through the CLI', async () => {
    const res = await add('--thumbprint', fingerprint.replace(/:/g, '').toLowerCase());
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`${EXPECTED_VMS.length} machine\\(s\\) found`));
    const hosts = (await registeredHosts()) as Array<{ name: string; thumbprint: string }>;
    assert.deepEqual(
      hosts.map((h) => [h.name, h.thumbprint]),
      [['vc1', fingerprint]],
    );

    const json = await osr(['discover', '--host', 'vc1', '--json']);
    assert.equal(json.code, 0, json.stderr);
    const found = (JSON.parse(json.stdout) as { machines: DiscoveredMachine[] }).machines;
    assert.deepEqual(found.map((m) => m.name).sort(), EXPECTED_VMS);
    for (const m of found) {
      assert.equal(m.state, m.name === POWERED_OFF ? 'poweredOff' : 'poweredOn', m.name);
      assert.equal(m.details?.datacenter, 'DC0');
      assert.ok(EXPECTED_HOSTS.includes(m.details?.esxiHost ?? ''), `${m.name} on ${m.details?.esxiHost}`);
      assert.equal(m.changeTracking.possible, false);
      assert.match(m.changeTracking.reason ?? '', /in-guest agent/);
      assert.ok(m.disks.length >= 1 && (m.disks[0]?.sizeBytes ?? 0) > 0, `${m.name} has a sized disk`);
      assert.match(m.disks[0]?.location ?? '', /\.vmdk$/);
    }
    let runId: string | undefined;
    for await (const wf of stack.client.workflow.list({ query: `WorkflowType = 'discoverHost'` }))
      if (wf.status.name === 'COMPLETED') runId ??= wf.workflowId;
    assert.ok(runId, 'discovery ran as a discoverHost workflow');
    await assertReplays(stack.client.workflow.getHandle(runId), 'discoverHost-vcenter');
    const table = await osr(['discover']);
    assert.equal(table.code, 0, table.stderr);
    for (const name of EXPECTED_VMS)
      assert.match(table.stdout, new RegExp(`vc1\\s+${name}\\s+powered(On|Off)`));
  });

  test('the API lists the host with its live process server and the same machines', async () => {
    const headers = { Authorization: `Bearer ${token}` };
    const hosts = (await (await fetch(`${api.url}/v1/hosts`, { headers })).json()) as {
      hosts: Array<{ name: string; servers: { live: string[] } }>;
    };
    assert.equal(hosts.hosts[0]?.name, 'vc1');
    assert.equal(hosts.hosts[0]?.servers.live.length, 1);
    const res = await fetch(`${api.url}/v1/discover?host=vc1`, { headers });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { machines: DiscoveredMachine[] };
    assert.deepEqual(body.machines.map((m) => m.name).sort(), EXPECTED_VMS);
    assert.equal(body.machines.find((m) => m.name === POWERED_OFF)?.state, 'poweredOff');
    // A second add of the name is a conflict; a bad pin in a body is a 400 naming the field's fix.
    const again = await fetch(`${api.url}/v1/hosts`, {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'vc1', kind: 'vcenter', url: vcsim.url, user: 'a', passwordFile }),
    });
    assert.equal(again.status, 409);
    const badPin = await fetch(`${api.url}/v1/hosts`, {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'application/json' },
      body: JSON.stringify({
        name: 'vc2',
        kind: 'vcenter',
        url: vcsim.url,
        user: 'a',
        passwordFile,
        thumbprint: 'abc',
      }),
    });
    assert.equal(badPin.status, 400);
    assert.match(
      ((await badPin.json()) as { error: { message: string } }).error.message,
      /not a SHA-256 fingerprint/,
    );
  });
});

/** Powers a VM off through the vSphere API (the test's own calls, not OSR's discovery code). */
