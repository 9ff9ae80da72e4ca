// Refusing what cannot work at the moment it is asked (issue #18), on the real stack: a source
// that runs its own NBD server protected without --nbd, one disk protected twice under two names,
// a second drill while one is alive. Each refusal names the problem and the fix, has the
// documented exit code (2 bad input, 5 conflict) or HTTP status, and leaves nothing behind.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { ApiServer } from '../../api/server';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { QmpClient } from '../../lib/qemu/qmp-client';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { startTestApi } from '../helpers/api-client';
import { runCli, type CliResult } from '../helpers/cli';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const token = randomBytes(32).toString('base64url');
let bed: Testbed;
let vm: TestMachine;
let api: ApiServer;
let scratch: string;

const osr = (...args: string[]): Promise<CliResult> => runCli(args, bed.stack.env);

function assertRefused(res: CliResult, code: number, message: RegExp): void {
  assert.equal(res.code, code, `exit code; stdout: ${res.stdout} stderr: ${res.stderr}`);
  assert.match(res.stderr, message);
  assert.doesNotMatch(res.stderr, /\n\s+at |\.js:\d+:\d+|nbdSocket option/, 'no stack trace, no internals');
}

async function workflowExists(workflowId: string): Promise<boolean> {
  try {
    await (await bed.ctx.client()).workflow.getHandle(workflowId).describe();
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

async function assertNothingFor(name: string): Promise<void> {
  assert.equal(await bed.ctx.vault.machine(name), undefined, `${name} is not registered`);
  assert.equal(await workflowExists(`protect/${name}`), false, `no workflow for ${name}`);
}

async function failoverBlobs(): Promise<string[]> {
  const names: string[] = [];
  for await (const b of bed.ctx.blobService.getContainerClient(CONTAINERS.failover).listBlobsFlat())
    names.push(b.name);
  return names.sort();
}

before(async () => {
  bed = await startTestbed();
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-refuse-'));
  // A qemu-storage-daemon with its own NBD server (--nbd-server) exporting both disks.
  vm = await startTestMachine({ sizes: [4 * MiB, 2 * MiB] });
  const disk = await vm.disk(0);
  await disk.write(0, pseudoRandom(MiB, 5));
  await disk.flush();
  api = await startTestApi(bed, token, 'refusals-test');
});

after(async () => {
  await api?.close();
  await vm?.stop();
  await bed?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

test('a source that runs its own NBD server is refused without --nbd, naming its exports and the fix', async () => {
  assertRefused(
    await osr('protect', 'nbd1', '--qmp', vm.daemon.qmpSocket, '--policy', 'manual'),
    2,
    /already runs its own NBD server \(exports: disk0 \(node osrio-disk0\), disk1 \(node osrio-disk1\)\).*pass that server's unix socket with --nbd <path>.*Nothing was started/,
  );
  await assertNothingFor('nbd1');
});

test('an NBD server started after protect fails the cycle with the same fix, in OSR words', async () => {
  const late = await startTestMachine({ sizes: [MiB] });
  try {
    const qmpOf = () => QmpClient.connect(late.daemon.qmpSocket);
    let qmp = await qmpOf();
    // No NBD server of its own: protect is accepted and OSR starts its own server.
    await qmp.execute('nbd-server-stop');
    await qmp.close();
    const protectedNow = await osr('protect', 'late1', '--qmp', late.daemon.qmpSocket, '--policy', 'manual');
    assert.equal(protectedNow.code, 0, protectedNow.stderr);
    await waitForStatus(bed.ctx, 'late1', (s) => s.state === 'protected');
    // Then someone starts the daemon's own server in place of OSR's.
    qmp = await qmpOf();
    await qmp.execute('nbd-server-stop');
    await qmp.execute('nbd-server-start', {
      addr: { type: 'unix', data: { path: path.join(scratch, 'late-nbd.sock') } },
    });
    await qmp.execute('block-export-add', { type: 'nbd', id: 'mine', 'node-name': 'disk0', name: 'mine' });
    await qmp.close();
    const point = await osr('point', 'late1');
    assert.notEqual(point.code, 0, point.stdout);
    assert.match(
      point.stderr,
      /machine late1: this QEMU process already runs its own NBD server \(exports: mine \(node disk0\)\).*Unprotect it \(`osr unprotect late1`\) and protect it again with --nbd <path>/,
    );
    assert.doesNotMatch(point.stderr, /nbdSocket option/);
    assert.equal((await osr('unprotect', 'late1')).code, 0);
  } finally {
    await late.stop();
  }
});

test('one disk protected twice under two names is refused (exit 5), naming the other machine and the fix', async () => {
  const first = await osr(
    'protect',
    'dup1',
    '--qmp',
    vm.daemon.qmpSocket,
    '--nbd',
    vm.daemon.nbdSocket,
    '--policy',
    'manual',
  );
  assert.equal(first.code, 0, first.stderr);
  await waitForStatus(bed.ctx, 'dup1', (s) => s.state === 'protected');

  // The same monitor under another path (a symlink) is the same source.
  const alias = path.join(scratch, 'alias.qmp');
  fs.symlinkSync(vm.daemon.qmpSocket, alias);
  for (const [qmp, disks, shared] of [
    [vm.daemon.qmpSocket, [], 'disks disk0, disk1'],
    [alias, [], 'disks disk0, disk1'],
    [alias, ['--disks', 'disk1'], 'disk disk1'],
  ] as const) {
    assertRefused(
      await osr(
        'protect',
        'dup2',
        '--qmp',
        qmp,
        '--nbd',
        vm.daemon.nbdSocket,
        ...disks,
        '--policy',
        'manual',
      ),
      5,
      new RegExp(
        `machine dup1 already protects ${shared} of .*: two protections of one disk would share its change tracking\\. Unprotect it first \\(\`osr unprotect dup1\`\\), or protect other disks of this source with --disks\\. Nothing was started`,
      ),
    );
    await assertNothingFor('dup2');
  }
  // The name itself already protected: said as before, before the source is looked at.
  assertRefused(
    await osr('protect', 'dup1', '--qmp', vm.daemon.qmpSocket, '--policy', 'manual'),
    5,
    /machine dup1 is already protected/,
  );
});

test('a second drill while one is alive is refused unless asked; status after cleanup says cleaned up', async () => {
  const took = await osr('point', 'dup1');
  assert.equal(took.code, 0, took.stderr);
  const drill = await osr('failover', 'test', 'dup1', '--json');
  assert.equal(drill.code, 0, drill.stderr);
  const { ref } = JSON.parse(drill.stdout) as { ref: { job: string; workflowId: string } };
  const blobs = await failoverBlobs();
  assert.equal(blobs.length, 2);

  const fix = new RegExp(
    `machine dup1 already has a live drill: job ${ref.job} \\(${ref.workflowId}, ready, not cleaned up\\)\\. Clean it up first \\(\`osr failover cleanup ${ref.job}\`\\), or ask for another drill beside it with --another.*Nothing was started`,
  );
  assertRefused(await osr('failover', 'test', 'dup1'), 5, fix);
  const res = await fetch(`${api.url}/v1/machines/dup1/test-failover`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({}),
  });
  const body = (await res.json()) as { error: { message: string } };
  assert.equal(res.status, 409, JSON.stringify(body));
  assert.match(body.error.message, fix);
  assert.deepEqual(await failoverBlobs(), blobs, 'no disk copied by a refused drill');
  const jobs = await osr('failover', 'status', '--json');
  assert.equal(
    (JSON.parse(jobs.stdout) as Array<{ kind: string }>).filter((j) => j.kind === 'drill').length,
    1,
    'no drill workflow started',
  );

  // Asked for explicitly, a second drill runs.
  const another = await osr('failover', 'test', 'dup1', '--another', '--json');
  assert.equal(another.code, 0, another.stderr);
  assert.equal((JSON.parse(another.stdout) as { status: RecoveryStatus }).status.state, 'ready');
  assert.equal((await failoverBlobs()).length, 4);

  const cleaned = await osr('failover', 'cleanup', 'dup1');
  assert.equal(cleaned.code, 0, cleaned.stderr);
  assert.deepEqual(await failoverBlobs(), []);
  for (const target of [ref.job, ref.workflowId]) {
    const shown = await osr('failover', 'status', target, '--json');
    assert.equal(shown.code, 0, shown.stderr);
    const status = JSON.parse(shown.stdout) as RecoveryStatus;
    assert.equal(status.job, ref.job, `status ${target} is the drill's`);
    assert.equal(status.kind, 'drill');
    assert.equal(status.state, 'cleaned-up', `status ${target}`);
    const human = await osr('failover', 'status', target);
    assert.match(human.stdout, /cleaned-up/);
    assert.match(
      human.stdout,
      /cleaned up at .* by drill-cleanup\/dup1\/.*: the drill's disks, local copies and record are removed/,
    );
  }
  // Once cleaned up, a drill is no longer in the way.
  const again = await osr('failover', 'test', 'dup1', '--json');
  assert.equal(again.code, 0, again.stderr);
  assert.equal((await osr('failover', 'cleanup', 'dup1')).code, 0);
});
