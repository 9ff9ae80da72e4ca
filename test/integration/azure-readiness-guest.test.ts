// The Azure readiness check at protect, inside the real test guest through the real qemu-ga
// (guest-exec). The test guest has no Hyper-V drivers and names its disk /dev/vda: protect must
// record those problems with their fix, read back in the machine's status. A machine protected
// without a guest agent (a qemu-storage-daemon source) is "not checked", with the reason. Both are
// read back as the operator sees them: `osr status` and GET /v1/machines/{name}.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, after, before } from 'node:test';
import * as machines from '../../operations/machines';
import { NO_GUEST_AGENT } from '../../lib/qemu/azure-readiness';
import { readinessLines } from '../../shared/azure-readiness';
import { startTestApi } from '../helpers/api-client';
import { runCli } from '../helpers/cli';
import { waitForStatus } from '../helpers/protection';
import { startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestVm, type TestVm } from '../helpers/test-vm';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let bed: Testbed;
let vm: TestVm;
let plain: TestMachine;

before(async () => {
  bed = await startTestbed();
  [vm, plain] = await Promise.all([
    startTestVm({ disks: [8 * MiB], guestAgent: true }),
    startTestMachine({ sizes: [MiB] }),
  ]);
});

after(async () => {
  await bed?.stop();
  await vm?.stop();
  await plain?.stop();
});

test('protect records what the real guest shows: no Hyper-V drivers, /dev/vda in fstab; each with its fix', async () => {
  const { ctx } = bed;
  // The guest's own configuration: it mounts its disk by device name.
  const wrote = await vm.run(`echo '${vm.disks[0]?.guestDevice} /mnt ext4 defaults 0 0' > /etc/fstab`);
  assert.equal(wrote.code, 0, wrote.output);
  const uname = await vm.run('uname -r');
  assert.equal(uname.code, 0, uname.output);
  const kernel = uname.output.trim();
  const hv = await vm.run('find / -xdev -name "hv_*.ko*" 2>/dev/null | wc -l');
  assert.equal(hv.output.trim(), '0', 'the test guest really has no Hyper-V driver files');

  await machines.protect(ctx, {
    name: 'az1',
    qmpSocket: vm.qmpSocket,
    policy: 'manual',
    quiesce: { guestAgentSocket: vm.guestAgentSocket },
  });
  const status = await waitForStatus(ctx, 'az1', (s) => s.state === 'protected');
  const r = status.azureReadiness;
  assert.ok(r?.checked, `checked through the guest agent: ${JSON.stringify(r)}`);
  assert.equal(r.kernel, kernel, 'the running kernel, as the guest itself reports it');
  assert.equal(r.ready, false);
  const drivers = r.problems.find((p) => /has no hv_vmbus, hv_storvsc, hv_netvsc/.test(p.what));
  assert.ok(drivers, `the missing drivers are named: ${JSON.stringify(r.problems)}`);
  assert.match(drivers.fix, /install the Hyper-V drivers/);
  const fstab = r.problems.find((p) => /\/etc\/fstab/.test(p.what));
  assert.ok(fstab, `the device name in fstab is named: ${JSON.stringify(r.problems)}`);
  assert.match(fstab.what, /\(\/dev\/vda\)/);
  assert.match(fstab.fix, /UUID= or LABEL=/);
  assert.equal(r.problems.length, 2, JSON.stringify(r.problems));
  // Recorded with the machine in the vault, and the lines `osr status` prints.
  assert.deepEqual((await ctx.vault.machine('az1'))?.azureReadiness, r);
  const lines = readinessLines(r);
  assert.match(lines[0] as string, /^azure readiness: 2 problem\(s\)/);
  assert.ok(lines.includes(`    fix: ${fstab.fix}`));

  // What the operator sees: `osr status` and the API's machine status.
  const cli = await runCli(['status', 'az1'], bed.stack.env);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /\nazure readiness: 2 problem\(s\) \(kernel /);
  assert.ok(cli.stdout.includes(`  - ${fstab.what}\n    fix: ${fstab.fix}\n`), cli.stdout);
  const token = randomBytes(32).toString('base64url');
  const api = await startTestApi(bed, token, 'readiness-api-test');
  try {
    const res = await fetch(`${api.url}/v1/machines/az1`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { azureReadiness?: unknown }).azureReadiness, r);
  } finally {
    await api.close();
  }
});

test('a machine protected without a guest agent is "not checked", with the reason', async () => {
  const { ctx } = bed;
  await machines.protect(ctx, {
    name: 'az2',
    qmpSocket: plain.daemon.qmpSocket,
    nbdSocket: plain.daemon.nbdSocket,
    policy: 'manual',
  });
  const status = await waitForStatus(ctx, 'az2', (s) => s.state === 'protected');
  assert.deepEqual(status.azureReadiness && { ...status.azureReadiness, checkedAt: '' }, {
    checked: false,
    checkedAt: '',
    reason: NO_GUEST_AGENT,
  });
  assert.match(
    readinessLines(status.azureReadiness!)[0] as string,
    /^azure readiness: not checked \(no guest agent: protect with --guest-agent/,
  );
  const cli = await runCli(['status', 'az2'], bed.stack.env);
  assert.equal(cli.code, 0, cli.stderr);
  assert.ok(cli.stdout.includes(`\nazure readiness: not checked (${NO_GUEST_AGENT})\n`), cli.stdout);
});
