// Bad input, as an operator meets it at the CLI: each mistake gets a message that names the
// problem and the fix, the documented exit code (2 bad input or configuration, 4 not found,
// 5 conflict), no stack trace, and loses nothing: no half-registered machine, no lost write, no
// operation that ran although it was refused.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { WorkflowNotFoundError } from '@temporalio/client';
import { startApiServer } from '../../api/server';
import { startStorageDaemon } from '../../lib/qemu/storage-daemon';
import { loadConfig } from '../../lib/config/config';
import { createLogger } from '../../lib/config/logger';
import type { ControlContext } from '../../operations/context';

import { waitForStatus } from '../helpers/protection';
import { startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import type { TestStack } from '../helpers/test-stack';
import { assertRefused, cliFor, protectArgs } from '../helpers/cli';
import { BAD_INPUT_MACHINE, useMachineTestbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const build = path.resolve(__dirname, '..', '..');
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
let scratch: string;

async function workflowExists(workflowId: string): Promise<boolean> {
  const client = await ctx.client();
  try {
    await client.workflow.getHandle(workflowId).describe();
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

const osr = cliFor(() => stack.env);

useMachineTestbed(BAD_INPUT_MACHINE, (bed) => ({ stack, ctx, vm, scratch } = bed));

test('malformed configuration: the key, its source and the fix; exit 2; nothing is run or recorded', async () => {
  const file = path.join(scratch, 'osr.json');
  const withFile = async (content: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}) => {
    fs.writeFileSync(file, content);
    return osr(args, { OSR_CONFIG: file, ...extraEnv });
  };
  assertRefused(
    await withFile('{ "site": ', ['policy', 'list']),
    2,
    /Config file .*osr\.json is not valid JSON: .*Fix the file or point OSR_CONFIG elsewhere/,
  );
  assertRefused(
    await withFile('{"api": {"tokn": "x"}}', ['policy', 'list']),
    2,
    /unknown key "api\.tokn" in .*osr\.json: remove it or check its spelling \(see docs\/configuration\.md\)/,
  );
  assertRefused(
    await withFile('{"pipeline": {"threads": "four"}}', ['policy', 'list']),
    2,
    /"pipeline\.threads" in .*osr\.json: .*expected number/i,
  );
  assertRefused(
    await withFile('{}', ['policy', 'list'], { OSR_AZURITE_PORT: 'ten-thousand' }),
    2,
    /OSR_AZURITE_PORT="ten-thousand" is not a number\. Fix: set OSR_AZURITE_PORT to a number or unset it/,
  );
  assertRefused(
    await withFile('{}', ['policy', 'list'], { OSR_TEMPORAL_PORT: '70000' }),
    2,
    /environment variable OSR_TEMPORAL_PORT: .*65535/,
  );
  assertRefused(
    await withFile('{}', ['policy', 'list'], { OSR_LOG_LEVEL: 'loud' }),
    2,
    /environment variable OSR_LOG_LEVEL: .*"info"/,
  );
  assertRefused(
    await osr(['policy', 'list'], { OSR_CONFIG: path.join(scratch, 'nowhere.json') }),
    2,
    /Config file .*nowhere\.json does not exist\. Fix: create it, or unset OSR_CONFIG/,
  );

  // A refused command changed nothing: the machine is not registered, no workflow was started.
  assertRefused(
    await withFile('{"storage": {"conectionString": "x"}}', [
      'protect',
      'cfg1',
      '--qmp',
      vm.daemon.qmpSocket,
      '--policy',
      'manual',
    ]),
    2,
    /unknown key "storage\.conectionString"/,
  );
  assert.equal(await ctx.vault.machine('cfg1'), undefined);
  assert.equal(await workflowExists('protect/cfg1'), false);

  // Workers refuse to start the same way, and a bad segment key is named without echoing it.
  const worker = async (extraEnv: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> => {
    const child = spawn(process.execPath, [path.join(build, 'workers', 'process-server.js')], {
      env: { ...stack.env, ...extraEnv },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    return { code, stderr };
  };
  const threads = await worker({ OSR_PIPELINE_THREADS: 'lots' });
  assert.equal(threads.code, 1);
  assert.match(threads.stderr, /process-server worker failed: .*OSR_PIPELINE_THREADS="lots" is not a number/);
  const badKey = 'c2hvcnQta2V5';
  const key = await worker({ OSR_ENCRYPTION_KEY: badKey });
  assert.equal(key.code, 1);
  assert.match(
    key.stderr,
    /process-server worker failed: OSR_ENCRYPTION_KEY \/ encryption\.key is not base64 of 32 bytes .*create one with/,
  );
  assert.ok(!key.stderr.includes(badKey), 'the bad key is not echoed');
});

test('a wrong QMP socket is refused at protect with the fix, before anything is started', async () => {
  const plainFile = path.join(scratch, 'not-a-socket');
  fs.writeFileSync(plainFile, 'hello');
  // The socket a killed QEMU left behind: the file is there, nobody listens.
  const deadDir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-dead-'));
  const deadImage = path.join(deadDir, 'disk0.raw');
  fs.writeFileSync(deadImage, '');
  fs.truncateSync(deadImage, MiB);
  const dead = await startStorageDaemon({ stateDir: deadDir, images: [{ path: deadImage, format: 'raw' }] });
  process.kill(dead.pid, 'SIGKILL');
  await dead.stop();
  assert.ok(fs.existsSync(dead.qmpSocket), 'the killed daemon left its QMP socket');
  const cases: Array<[string, string, RegExp]> = [
    [
      'q-missing',
      path.join(scratch, 'missing.sock'),
      /no QMP socket at .*missing\.sock: start the VM or qemu-storage-daemon with a QMP monitor/,
    ],
    ['q-file', plainFile, /no QMP socket at .*not-a-socket \(it is a regular file, not a socket\)/],
    [
      'q-dead',
      dead.qmpSocket,
      /no QMP socket at .*qmp\.sock \(connection refused: the process that made it is gone\)/,
    ],
    [
      'q-nbd',
      vm.daemon.nbdSocket,
      /nbd\.sock is an NBD server socket, not a QMP monitor: give it as --nbd, and the QMP monitor socket as --qmp\. Nothing was started/,
    ],
  ];
  for (const [name, socket, message] of cases) {
    assertRefused(await osr(['protect', name, '--qmp', socket, '--policy', 'manual']), 2, message);
    assert.equal(await ctx.vault.machine(name), undefined, `${name} is not registered`);
    assert.equal(await workflowExists(`protect/${name}`), false, `no workflow for ${name}`);
  }
  fs.rmSync(deadDir, { recursive: true, force: true });

  // On a machine of its own: bi1 protects vm's disk, and a second protection of it is refused.
  const other = await startTestMachine({ sizes: [MiB] });
  // A mistake only the process server can see (a disk the machine does not have) fails the
  // enable step: `osr protect` waits for it and says why, and so does `osr status` afterwards.
  assertRefused(
    await osr([
      'protect',
      'q-disks',
      '--qmp',
      other.daemon.qmpSocket,
      '--disks',
      'disk7',
      '--policy',
      'manual',
    ]),
    2,
    /protecting q-disks failed: machine q-disks has no disk disk7; it has disk0\. Fix the --disks list\. Nothing is replicated; fix it and run `osr protect q-disks` again/,
  );
  assertRefused(
    await osr(['status', 'q-disks', '--no-follow']),
    4,
    /machine q-disks is not protected \(its workflow protect\/q-disks is failed: machine q-disks has no disk disk7; it has disk0\. Fix the --disks list\.\)/,
  );
  // Protecting it again, right, works: the failed attempt left nothing in the way.
  const fixed = await osr(protectArgs('q-disks', other));
  assert.equal(fixed.code, 0, fixed.stderr);
  await waitForStatus(ctx, 'q-disks', (s) => s.state === 'protected');
  const unprotected = await osr(['unprotect', 'q-disks']);
  assert.equal(unprotected.code, 0, unprotected.stderr);
  await other.stop();
});

test('wrong storage credentials: the CLI, doctor, protect, a worker and the API say so; nothing hangs or is lost', async () => {
  const badKey = randomBytes(64).toString('base64');
  const bad = {
    OSR_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${badKey};BlobEndpoint=http://127.0.0.1:${stack.config.storage.azuritePort}/devstoreaccount1;`,
  };
  const refusal =
    /storage account devstoreaccount1 at http:\/\/127\.0\.0\.1:\d+ refused OSR's credentials \(HTTP 403 AuthorizationFailure\): the AccountKey or SAS in storage\.connectionString is wrong or was rotated\. Fix: copy a current connection string/;
  const policies = async () => {
    const res = await osr(['policy', 'list', '--json']);
    assert.equal(res.code, 0, res.stderr);
    return (JSON.parse(res.stdout) as Array<{ name: string }>).map((p) => p.name).sort();
  };
  const policiesBefore = await policies();
  for (const args of [
    ['policy', 'list'],
    ['status'],
    ['doctor', '--wait', '5'],
    ['policy', 'create', 'cred1', '--rpo', '5m'],
    ['protect', 'cred1', '--qmp', vm.daemon.qmpSocket, '--policy', 'manual'],
  ]) {
    const res = await osr(args, bad);
    assertRefused(res, 2, refusal);
    assert.ok(!`${res.stdout}${res.stderr}`.includes(badKey), 'the key is not printed');
  }
  assert.equal(await workflowExists('protect/cred1'), false, 'protect started nothing');

  // A worker with those credentials stops at start with the same message.
  const child = spawn(process.execPath, [path.join(build, 'workers', 'cloud-applier.js')], {
    env: { ...stack.env, ...bad },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  assert.equal(await new Promise((r) => child.once('exit', r)), 1);
  assert.match(stderr, new RegExp(`cloud-applier worker failed: ${refusal.source}`));

  // The API answers 503 with the reason (its operator must fix its configuration).
  const config = loadConfig({ env: { ...stack.env, ...bad } });
  const api = await startApiServer({
    config,
    token: 'a-token-of-sixteen-chars',
    host: '127.0.0.1',
    port: 0,
    logger: createLogger('bad-input-api', 'silent'),
  });
  try {
    const res = await fetch(`${api.url}/v1/policies`, {
      headers: { authorization: 'Bearer a-token-of-sixteen-chars' },
    });
    assert.equal(res.status, 503);
    assert.match(((await res.json()) as { error: { message: string } }).error.message, refusal);
  } finally {
    await api.close();
  }

  // With the right credentials everything is where it was, and nothing was added; doctor passes.
  assert.deepEqual(await policies(), policiesBefore);
  await stack.startWorker('master-target');
  const doctor = await osr(['doctor', '--json']);
  assert.equal(doctor.code, 0, doctor.stderr);
  const checked = JSON.parse(doctor.stdout) as { ok: boolean; warnings: string[] };
  assert.equal(checked.ok, true, doctor.stdout);
  assert.deepEqual(checked.warnings, [], 'nothing crosses a network in clear on loopback');
});

test('a point id or machine that does not exist: exit 4, the known ones listed, no file written', async () => {
  const out = path.join(scratch, 'never.raw');
  const known = (await ctx.vault.points('bi1')).map((p) => p.id);
  assert.ok(known.length > 0);
  const badPoint = await osr(['export', 'bi1', '--point', 'no-such-point', '--out', out]);
  assertRefused(
    badPoint,
    4,
    new RegExp(
      `machine bi1 has no recovery point "no-such-point"; use latest, .* one of: .*${known[known.length - 1]}`,
    ),
  );
  assert.equal(fs.existsSync(out), false, 'no partial export');
  assertRefused(
    await osr(['failover', 'test', 'bi1', '--point', '2001-01-01T00:00:00Z']),
    4,
    /has no recovery point "2001-01-01T00:00:00Z"/,
  );
  assertRefused(await osr(['points', 'ghost']), 4, /no protected machine named ghost; known: .*bi1/);
  assertRefused(
    await osr(['plan', 'create', 'p-ghost', '--group', 'bi1,ghost']),
    2,
    /ghost is not a protected machine/,
  );
  assertRefused(await osr(['plan', 'show', 'p-ghost']), 4, /no plan named p-ghost/);
});
