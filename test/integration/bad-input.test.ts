// Bad input, as an operator meets it at the CLI: each mistake gets a message that names the
// problem and the fix, the documented exit code (2 bad input or configuration, 4 not found,
// 5 conflict), no stack trace, and loses nothing: no half-registered machine, no lost write, no
// operation that ran although it was refused.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { WorkflowNotFoundError } from '@temporalio/client';
import { routes as apiRoutes } from '../../api/routes';
import { startApiServer } from '../../api/server';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { startStorageDaemon, type StorageDaemon } from '../../lib/qemu/storage-daemon';
import { loadConfig } from '../../lib/config/config';
import { createLogger } from '../../lib/config/logger';
import type { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import type { MachineStatus } from '../../shared/contracts/protect-machine';
import type { AuditEntry } from '../../operations/audit';
import { createPolicy } from '../../operations/policies';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import type { TestStack } from '../helpers/test-stack';
import { startTestbed, type Testbed } from '../helpers/testbed';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const build = path.resolve(__dirname, '..', '..');
const cli = path.join(build, 'cli', 'main.js');
let bed: Testbed;
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
let scratch: string;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function osr(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], {
      env: { ...stack.env, ...extraEnv },
      timeout: 180_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string; killed?: boolean };
    assert.ok(!e.killed, `osr ${args.join(' ')} hung`);
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A refusal: its exit code, its message, and nothing an operator should not see. */
function assertRefused(res: Result, code: number, message: RegExp): void {
  assert.equal(res.code, code, `exit code; stderr: ${res.stderr}`);
  assert.match(res.stderr, message);
  assert.doesNotMatch(res.stderr, /\n\s+at |\.js:\d+:\d+/, 'no stack trace');
}

/** Every string and byte string inside a value (a history, with its payloads' data). */
function strings(value: unknown, out: string[]): void {
  if (typeof value === 'string') out.push(value);
  else if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'));
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) strings(v, out);
}

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

before(async () => {
  bed = await startTestbed();
  ({ stack, ctx } = bed);
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-bad-'));
  vm = await startTestMachine({ sizes: [8 * MiB] });
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(MiB, 3));
  await disk.flush();
  // bi1: protected, with a point, for the tests of unknown points and of conflicts.
  await machines.protect(ctx, {
    name: 'bi1',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(ctx, 'bi1', (s) => s.state === 'protected');
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

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

  // A mistake only the process server can see (a disk the machine does not have) fails the
  // enable step: `osr protect` waits for it and says why, and so does `osr status` afterwards.
  assertRefused(
    await osr(['protect', 'q-disks', '--qmp', vm.daemon.qmpSocket, '--disks', 'disk7', '--policy', 'manual']),
    2,
    /protecting q-disks failed: machine q-disks has no disk disk7; it has disk0\. Fix the --disks list\. Nothing is replicated; fix it and run `osr protect q-disks` again/,
  );
  assertRefused(
    await osr(['status', 'q-disks', '--no-follow']),
    4,
    /machine q-disks is not protected \(its workflow protect\/q-disks is failed: machine q-disks has no disk disk7; it has disk0\. Fix the --disks list\.\)/,
  );
  // Protecting it again, right, works: the failed attempt left nothing in the way.
  const fixed = await osr([
    'protect',
    'q-disks',
    '--qmp',
    vm.daemon.qmpSocket,
    '--nbd',
    vm.daemon.nbdSocket,
    '--policy',
    'manual',
  ]);
  assert.equal(fixed.code, 0, fixed.stderr);
  await waitForStatus(ctx, 'q-disks', (s) => s.state === 'protected');
  const unprotected = await osr(['unprotect', 'q-disks']);
  assert.equal(unprotected.code, 0, unprotected.stderr);
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

test('a raw disk: the alert explains the resync; after a daemon restart the next point resyncs by checksums and loses nothing', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-raw-'));
  const image = path.join(dir, 'disk0.raw');
  fs.writeFileSync(image, '');
  fs.truncateSync(image, 16 * MiB);
  let daemon: StorageDaemon | undefined = await startStorageDaemon({
    stateDir: dir,
    images: [{ path: image, format: 'raw' }],
  });
  let nbd: NbdClient | undefined;
  try {
    nbd = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'disk0' });
    await nbd.write(0, pseudoRandom(MiB, 11));
    await nbd.flush();
    const protectedRaw = await osr([
      'protect',
      'raw1',
      '--qmp',
      daemon.qmpSocket,
      '--nbd',
      daemon.nbdSocket,
      '--policy',
      'manual',
    ]);
    assert.equal(protectedRaw.code, 0, protectedRaw.stderr);
    await waitForStatus(ctx, 'raw1', (s) => s.state === 'protected');

    const shown = await osr(['status', 'raw1', '--json', '--no-follow']);
    assert.equal(shown.code, 0, shown.stderr);
    const volatile = (JSON.parse(shown.stdout) as MachineStatus).alerts.find(
      (a) => a.kind === 'tracking-volatile',
    );
    assert.ok(volatile, shown.stdout);
    assert.match(
      volatile.message,
      /disk0 is not qcow2, so its change tracking lives only in memory: a restart of the VM or storage daemon forces a resync \(checksums of every block\)\. Convert the disk to qcow2 to avoid it\./,
    );
    assert.match(
      (await osr(['status', 'raw1', '--no-follow'])).stdout,
      /\[warning\] .* tracking-volatile: disk0 is not qcow2/,
    );

    // A write after the last point, then the daemon restarts (the in-memory bitmap is gone),
    // then another write nobody tracked.
    await nbd.write(4 * MiB, pseudoRandom(MiB, 12));
    await nbd.flush();
    await nbd.close();
    nbd = undefined;
    await daemon.stop();
    daemon = await startStorageDaemon({ stateDir: dir, images: [{ path: image, format: 'raw' }] });
    nbd = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'disk0' });
    await nbd.write(9 * MiB, pseudoRandom(MiB, 13));
    await nbd.flush();
    const before = await machines.machineStatus(ctx, 'raw1');

    const cut = await osr(['point', 'raw1', '--json']);
    assert.equal(cut.code, 0, cut.stderr);
    const point = await pointById(ctx, 'raw1', (JSON.parse(cut.stdout) as { id: string }).id);
    const after = await machines.machineStatus(ctx, 'raw1');
    // The cycle's freeze found the tracking gone and said so (the resync-needed alert it raised
    // is cleared once the resync is published); the workflow's history keeps the words.
    const history: string[] = [];
    strings(await (await ctx.client()).workflow.getHandle('protect/raw1').fetchHistory(), history);
    assert.ok(
      history.some((t) => /tracking lost on disk0 .*resynchronizing by checksums/.test(t)),
      'the freeze reported the lost tracking',
    );
    // Nothing is lost: the point is the whole disk as it is, both writes included.
    const source = await nbd.read(0, nbd.size);
    const exported = await exportedImage(ctx, point);
    assert.ok(exported.equals(source), 'the point after the restart equals the disk');
    // And the resync sent the differing blocks only, not the disk.
    const sent = after.stats.bytesChanged - before.stats.bytesChanged;
    assert.ok(sent >= 2 * MiB && sent <= 4 * MiB, `resync sent ${sent} bytes for 2 MiB of changes`);
    assert.equal(after.disks[0]?.nextMode, 'delta', 'tracking is back');
    const unprotected = await osr(['unprotect', 'raw1']);
    assert.equal(unprotected.code, 0, unprotected.stderr);
  } finally {
    await nbd?.close().catch(() => undefined);
    await daemon?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
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

test('a name that is not a name (../policies/demo, ../../etc): 400 on every API route, exit 2 on every CLI command; nothing read as it, nothing written', async () => {
  // The document the names aim at, so that reading it "as a machine" would answer.
  await createPolicy(ctx, { name: 'demo', crashPointSeconds: 3600, appPointSeconds: 0 });
  const blobs = async (container: string): Promise<string[]> => {
    const names: string[] = [];
    for await (const b of ctx.blobService.getContainerClient(container).listBlobsFlat()) names.push(b.name);
    return names.sort();
  };
  const vaultBefore = await blobs(CONTAINERS.vault);
  const failoverBefore = await blobs(CONTAINERS.failover);
  const policyOfBi1 = (await ctx.vault.machine('bi1'))?.policy;
  const client = await ctx.client();
  const workflows = async (): Promise<Set<string>> => {
    const ids = new Set<string>();
    for await (const wf of client.workflow.list()) ids.add(wf.workflowId);
    return ids;
  };
  const workflowsBefore = await workflows();

  const fix = 'is not valid: use lower-case letters, digits and dashes \\(at most 63\\)';
  const named = (noun: string, name: string, rest = fix) =>
    new RegExp(`${noun} "${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}" ${rest}`);
  const JOB = 'is not valid: use a job id or workflow id';
  const POINT = 'is not valid: use latest, latest-app, a point id';

  // Every API route that takes a name in its path: [method, template, noun, body].
  const pathRoutes: Array<[string, string, string, string?, unknown?]> = [
    ['GET', '/v1/machines/{name}', 'machine name'],
    ['GET', '/v1/machines/{name}/points', 'machine name'],
    ['POST', '/v1/machines/{name}/points', 'machine name', fix, { kind: 'crash' }],
    ['POST', '/v1/machines/{name}/resync', 'machine name'],
    ['POST', '/v1/machines/{name}/pause', 'machine name', fix, { reason: 'x' }],
    ['POST', '/v1/machines/{name}/resume', 'machine name'],
    ['POST', '/v1/machines/{name}/test-failover', 'machine name', fix, { point: 'latest' }],
    ['POST', '/v1/machines/{name}/test-failover/cleanup', 'machine name'],
    ['POST', '/v1/machines/{name}/failover', 'machine name', fix, { point: 'latest' }],
    ['POST', '/v1/machines/{name}/failover/commit', 'machine name'],
    ['POST', '/v1/machines/{name}/failover/change-point', 'machine name', fix, { point: 'latest' }],
    ['POST', '/v1/machines/{name}/reprotect', 'machine name'],
    ['GET', '/v1/machines/{name}/reprotect', 'machine name'],
    ['POST', '/v1/machines/{name}/reprotect/stop', 'machine name'],
    ['POST', '/v1/machines/{name}/failback', 'machine name'],
    ['POST', '/v1/machines/{name}/reenable', 'machine name'],
    ['GET', '/v1/jobs/{workflowId}', 'job id', JOB],
    ['GET', '/v1/plans/{name}', 'plan name'],
    ['POST', '/v1/plans/{name}/test-failover', 'plan name', fix, { point: 'latest' }],
    ['POST', '/v1/plans/{name}/test-failover/cleanup', 'plan name'],
    ['POST', '/v1/plans/{name}/failover', 'plan name', fix, { planned: true }],
    ['POST', '/v1/plans/{name}/reprotect', 'plan name'],
    ['POST', '/v1/plans/{name}/failback', 'plan name'],
    ['POST', '/v1/plans/{name}/reenable', 'plan name'],
    ['POST', '/v1/plan-jobs/{job}/commit', 'job id', JOB],
    ['POST', '/v1/plan-jobs/{job}/approve', 'job id', JOB, { action: 'a1' }],
    ['GET', '/v1/groups/{name}', 'group name'],
    ['GET', '/v1/groups/{name}/points', 'group name'],
    ['POST', '/v1/groups/{name}/points', 'group name'],
    ['POST', '/v1/groups/{name}/delete', 'group name'],
  ];
  // The table is every route with a name in its path: a new route must join it.
  assert.deepEqual(
    apiRoutes
      .filter((r) => r.path.includes('{'))
      .map((r) => `${r.method} ${r.path}`)
      .sort(),
    pathRoutes.map(([m, p]) => `${m} ${p}`).sort(),
  );
  // Names in bodies (% stands for the bad name): a new policy, plan or group, its machines, a
  // point, a drill. The last element: the part refused, when not the whole bad name.
  const bodyRoutes: Array<[string, string, string, unknown, string?]> = [
    ['POST', '/v1/policies', 'policy name', { name: '%' }],
    ['POST', '/v1/plans', 'plan name', { name: '%', groups: [{ machines: ['bi1'] }] }],
    ['POST', '/v1/plans', 'machine name', { name: 'p-names', groups: [{ machines: ['%'] }] }],
    ['POST', '/v1/groups', 'group name', { name: '%', machines: ['bi1', 'bi2'] }],
    ['POST', '/v1/groups', 'machine name', { name: 'g-names', machines: ['bi1', '%'] }],
    ['POST', '/v1/machines/bi1/test-failover', 'point', { point: '%' }],
    ['POST', '/v1/machines/bi1/test-failover', 'group name', { point: 'group:%' }, '..'],
    ['POST', '/v1/machines/bi1/failover', 'point', { point: '%' }],
    ['POST', '/v1/machines/bi1/failover/change-point', 'point', { point: '%' }],
    ['POST', '/v1/plans/p-names/test-failover', 'point', { point: '%' }],
    ['POST', '/v1/plans/p-names/test-failover/cleanup', 'job id', { drill: '%' }],
  ];

  const token = 'a-token-of-sixteen-chars';
  const api = await startApiServer({
    config: stack.config,
    token,
    host: '127.0.0.1',
    port: 0,
    ctx,
    logger: createLogger('bad-input-names', 'silent'),
  });
  try {
    const call = async (method: string, url: string, body?: unknown) => {
      const res = await fetch(`${api.url}${url}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return {
        status: res.status,
        body: (await res.json()) as { error?: { code: string; message: string } },
      };
    };
    for (const bad of ['../policies/demo', '../../etc']) {
      for (const [method, template, noun, rest, body] of pathRoutes) {
        const url = template.replace(/\{\w+\}/, encodeURIComponent(bad));
        const reply = await call(method, url, body);
        assert.equal(reply.status, 400, `${method} ${url}: ${JSON.stringify(reply.body)}`);
        assert.equal(reply.body.error?.code, 'invalid', `${method} ${url}`);
        assert.match(reply.body.error?.message ?? '', named(noun, bad, rest ?? fix), `${method} ${url}`);
      }
      for (const [method, url, noun, body, part] of bodyRoutes) {
        const withBad = JSON.parse(JSON.stringify(body).replaceAll('%', bad)) as unknown;
        const reply = await call(method, url, withBad);
        const where = `${method} ${url} ${JSON.stringify(withBad)}`;
        assert.equal(reply.status, 400, `${where}: ${JSON.stringify(reply.body)}`);
        const rest = noun === 'point' ? POINT : noun === 'job id' ? JOB : fix;
        assert.match(reply.body.error?.message ?? '', named(noun, part ?? bad, rest), where);
      }
    }
  } finally {
    await api.close();
  }

  // Every CLI command that takes a name: [arguments (N: the bad name), noun, the part refused].
  const N = '../policies/demo';
  const out = path.join(scratch, 'names.raw');
  const commands: Array<[string[], string, string?]> = [
    [['protect', N, '--qmp', vm.daemon.qmpSocket], 'machine name'],
    [['protect', 'names1', '--qmp', vm.daemon.qmpSocket, '--policy', N], 'policy name'],
    [['status', N, '--no-follow'], 'machine name'],
    [['points', N], 'machine name'],
    [['point', N], 'machine name'],
    [['export', N, '--point', 'latest', '--out', out], 'machine name'],
    [['export', 'bi1', '--point', N, '--out', out], 'point'],
    [['export', 'bi1', '--point', `group:${N}`, '--out', out], 'group name', '..'],
    [['resync', N], 'machine name'],
    [['pause', N], 'machine name'],
    [['resume', N], 'machine name'],
    [['set-policy', N, 'manual'], 'machine name'],
    [['set-policy', 'bi1', N], 'policy name'],
    [['unprotect', N], 'machine name'],
    [['policy', 'create', N], 'policy name'],
    [['failover', 'test', N], 'machine name'],
    [['failover', 'test', 'bi1', '--point', N], 'point'],
    [['failover', 'cleanup', N], 'job id'],
    [['failover', 'start', N], 'machine name'],
    [['failover', 'start', 'bi1', '--point', N], 'point'],
    [['failover', 'commit', N], 'machine name'],
    [['failover', 'change-point', N, '--point', 'latest'], 'machine name'],
    [['failover', 'change-point', 'bi1', '--point', N], 'point'],
    [['failover', 'status', N], 'job id'],
    [['failover', 'configure', N, '--materialize', 'qcow2'], 'machine name'],
    [['plan', 'create', N, '--group', 'bi1'], 'plan name'],
    [['plan', 'create', 'p-names', '--group', `bi1,${N}`], 'machine name'],
    [['plan', 'show', N], 'plan name'],
    [['plan', 'test-failover', N], 'plan name'],
    [['plan', 'test-failover', 'p-names', '--point', N], 'point'],
    [['plan', 'cleanup', N], 'plan name'],
    [['plan', 'cleanup', 'p-names', '--drill', N], 'job id'],
    [['plan', 'failover', N], 'plan name'],
    [['plan', 'commit', N], 'job id'],
    [['plan', 'status', N], 'job id'],
    [['plan', 'reprotect', N], 'plan name'],
    [['plan', 'failback', N], 'plan name'],
    [['plan', 'reenable', N], 'plan name'],
    [['approve', N, 'a1'], 'job id'],
    [['group', 'create', N, '--machines', 'bi1,bi2'], 'group name'],
    [['group', 'create', 'g-names', '--machines', `bi1,${N}`], 'machine name'],
    [['group', 'show', N], 'group name'],
    [['group', 'points', N], 'group name'],
    [['group', 'point', N], 'group name'],
    [['group', 'set-interval', N, '60'], 'group name'],
    [['group', 'delete', N], 'group name'],
    [['reprotect', N], 'machine name'],
    [['reprotect-status', N], 'machine name'],
    [['reprotect-stop', N], 'machine name'],
    [['failback', N], 'machine name'],
    [['reenable', N], 'machine name'],
    [['failback-status', N], 'job id'],
    [['demo', 'start', '--name', N], 'machine name'],
  ];
  // A few at a time: each is a process of its own.
  for (let i = 0; i < commands.length; i += 4) {
    await Promise.all(
      commands.slice(i, i + 4).map(async ([args, noun, part]) => {
        const res = await osr(args);
        const rest = noun === 'point' ? POINT : noun === 'job id' ? JOB : fix;
        assert.equal(res.code, 2, `osr ${args.join(' ')}: exit ${res.code}; stderr: ${res.stderr}`);
        assert.match(res.stderr, named(noun, part ?? N, rest), `osr ${args.join(' ')}`);
        assert.doesNotMatch(res.stderr, /\n\s+at |\.js:\d+:\d+/, 'no stack trace');
      }),
    );
  }

  // Nothing was written: no document but the audit entries of the refusals, no failover disk,
  // no export, no demo folder, no workflow; bi1 kept its policy.
  const added = (await blobs(CONTAINERS.vault)).filter((n) => !vaultBefore.includes(n));
  assert.deepEqual(
    added.filter((n) => !n.startsWith('audit/')),
    [],
    'no document but audit entries was written',
  );
  for (const name of added) {
    const entry = (await ctx.vault.read<AuditEntry>(name))?.value;
    assert.equal(entry?.outcome, 'refused', `${name}: ${JSON.stringify(entry)}`);
    assert.equal(entry?.code, 'invalid', name);
  }
  assert.ok(added.length > 0, 'the refused changes are in the audit log');
  assert.deepEqual(await blobs(CONTAINERS.failover), failoverBefore);
  assert.equal(fs.existsSync(out), false, 'no export file');
  assert.equal(fs.existsSync(path.join(stack.config.stateDir, 'policies')), false, 'no demo folder');
  assert.equal((await ctx.vault.machine('bi1'))?.policy, policyOfBi1);
  assert.deepEqual(
    [...(await workflows())].filter((id) => !workflowsBefore.has(id)),
    [],
    'no workflow was started',
  );
});

test('conflicting operations on one machine at once: one proceeds, the other is told why, nothing is lost', async () => {
  // Two protects of one name.
  const protects = await Promise.all(
    [1, 2].map(() =>
      osr([
        'protect',
        'bi2',
        '--qmp',
        vm.daemon.qmpSocket,
        '--nbd',
        vm.daemon.nbdSocket,
        '--policy',
        'manual',
      ]),
    ),
  );
  assert.deepEqual(protects.map((r) => r.code).sort(), [0, 5], protects.map((r) => r.stderr).join('\n'));
  assertRefused(
    protects.find((r) => r.code === 5)!,
    5,
    /machine bi2 is already protected \(workflow protect\/bi2 is running\)/,
  );
  await waitForStatus(ctx, 'bi2', (s) => s.state === 'protected');

  // Pause while it is being disabled: the disable wins or the pause comes first; either way the
  // refused one says why, and the machine ends unprotected.
  const [pause, unprotect] = await Promise.all([osr(['pause', 'bi2']), osr(['unprotect', 'bi2'])]);
  assert.equal(unprotect.code, 0, unprotect.stderr);
  if (pause.code !== 0)
    assertRefused(
      pause,
      pause.code === 4 ? 4 : 5,
      /cannot pause machine bi2 while it is (disabling|disabled)|machine bi2 is not protected/,
    );
  assert.equal(await ctx.vault.machine('bi2'), undefined);
  const client = await ctx.client();
  assert.equal((await client.workflow.getHandle('protect/bi2').describe()).status.name, 'COMPLETED');

  // A drill's cleanup and two failovers of bi1 at once: the cleanup and one failover proceed,
  // the second failover is refused; the cleanup removes the drill's disks, not the failover's.
  await waitForStatus(ctx, 'bi1', (s) => s.state === 'protected');
  const drill = await osr(['failover', 'test', 'bi1', '--json']);
  assert.equal(drill.code, 0, drill.stderr);
  const drillJob = (JSON.parse(drill.stdout) as { ref: { job: string } }).ref.job;
  const [cleanup, f1, f2] = await Promise.all([
    osr(['failover', 'cleanup', 'bi1']),
    osr(['failover', 'start', 'bi1', '--json']),
    osr(['failover', 'start', 'bi1', '--json']),
  ]);
  assert.equal(cleanup.code, 0, cleanup.stderr);
  assert.deepEqual([f1.code, f2.code].sort(), [0, 5], `${f1.stderr}\n${f2.stderr}`);
  const [won, lost] = f1.code === 0 ? [f1, f2] : [f2, f1];
  assertRefused(lost, 5, /already running|same time/);
  const failedOver = JSON.parse(won.stdout) as {
    ref: { workflowId: string; job: string };
    status: RecoveryStatus;
  };
  assert.equal(failedOver.status.state, 'failed-over');
  const failoverBlobs: string[] = [];
  for await (const b of ctx.blobService.getContainerClient(CONTAINERS.failover).listBlobsFlat())
    failoverBlobs.push(b.name);
  assert.deepEqual(
    failoverBlobs.filter((n) => !n.startsWith('test-bi1-') || n.includes(drillJob)).sort(),
    failedOver.status.disks.map((d) => d.blob).sort(),
    'only the failover’s disks are left',
  );
  assert.ok(!failoverBlobs.some((n) => n.startsWith(`test-bi1-${drillJob}/`)), 'the drill’s disks are gone');
  // The machine kept replicating meanwhile.
  assert.equal((await machines.machineStatus(ctx, 'bi1')).state, 'protected');
});
