// Storage sign-in with container SAS URLs given per role (storage.auth "sas") on real Azurite, the
// real workers and Temporal: each role holds only its containers' SAS, made from the account key
// here, and carries protect, a point and a drill; a SAS that lacks a permission or has expired
// stops its worker before it polls, naming the role, the container and what is missing, and
// nothing is written; no signature or key reaches a log, an audit entry or the vault.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { BlobServiceClient } from '@azure/storage-blob';
import {
  AZURITE_ACCOUNT,
  AZURITE_KEY,
  CONTAINERS,
  createBlobServiceClient,
  ensureContainers,
} from '../../lib/azure/blob-client';
import { loadConfig } from '../../lib/config/config';
import type { StorageRole } from '../../lib/config/storage-roles';
import { ControlContext } from '../../operations/context';
import { openRoleStorage } from '../../lib/azure/role-storage';
import { startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import {
  allBlobs,
  assertNoSecrets,
  containerSas,
  drillAndCleanup,
  protectAndPoint,
  roleSasEnv,
  sasEnvName,
} from '../helpers/sign-in-fixture';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { stopPid, type RunningProcess } from '../../lib/process/managed-process';

const MiB = 1024 * 1024;
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
let running: RunningProcess[] = [];
let account: BlobServiceClient;
let accountUrl: string;
let roleEnv: Record<StorageRole, NodeJS.ProcessEnv>;

before(async () => {
  stack = await startTestStack();
  // The operator's part: the containers exist (a container SAS cannot create one).
  account = createBlobServiceClient(stack.config);
  await ensureContainers(account);
  accountUrl = `http://127.0.0.1:${stack.config.storage.azuritePort}/${AZURITE_ACCOUNT}`;
  roleEnv = roleSasEnv(accountUrl);
  // Kept: a refused worker started later takes its role's place in the test stack's list.
  running = await Promise.all([
    stack.startWorker('control', roleEnv.control),
    stack.startWorker('cloud-applier', roleEnv['cloud-applier']),
    stack.startWorker('process-server', roleEnv['process-server']),
  ]);
  ctx = new ControlContext(loadConfig({ env: { ...stack.env, ...roleEnv.control } }));
  vm = await startTestMachine({ sizes: [8 * MiB] });
});

after(async () => {
  await Promise.all(running.map((w) => stopPid(w.pid, 10_000)));
  await vm?.stop();
  await ctx?.close();
  await stack?.stop();
});

/** The log of the latest worker of a role (the test stack names them <role>-<ms>.log). */
function latestLog(role: string): string {
  const dir = path.join(stack.stateDir, 'logs');
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(`${role}-`))
    .sort();
  return fs.readFileSync(path.join(dir, files.at(-1)!), 'utf8');
}

test('with a container SAS per role: protect, a recovery point and a drill', async () => {
  const at = await protectAndPoint(ctx, account, vm, 'sas1');
  // The control plane holds only the control role's containers.
  assert.throws(
    () => ctx.blobService.getContainerClient(CONTAINERS.cache),
    /the control role is not given storage container osr-cache/,
  );
  // Azurite cannot authorize a blob snapshot read with a container SAS (Azure/Azurite#1857: it
  // puts the request's snapshot time into the string to sign), and a drill copies a point's
  // snapshot: here the cloud applier makes the drill with the account key, the control plane and
  // the process server stay on their SAS.
  const applier = running.find((w) => w.name === 'cloud-applier')!;
  await stopPid(applier.pid, 10_000);
  running = [...running.filter((w) => w !== applier), await stack.startWorker('cloud-applier')];
  await drillAndCleanup(ctx, account, 'sas1', at);
});

test('a role whose SAS lacks a permission is refused at start, naming it; nothing is written', async () => {
  const before = await allBlobs(account);
  const readOnly = containerSas(accountUrl, CONTAINERS.cache, 'rl');
  await assert.rejects(
    stack.startWorker('process-server', {
      ...roleEnv['process-server'],
      [sasEnvName('process-server', 'cache')]: readOnly,
    }),
    /exited 1/,
  );
  const log = latestLog('process-server');
  assert.match(log, /storage sign-in of the process-server role refused/);
  assert.match(log, /the SAS for container osr-cache lacks permission w \(write\), d \(delete\)/);
  assert.match(log, /Fix: issue a container SAS for osr-cache with permissions rwdl/);
  assert.match(log, /OSR_STORAGE_SAS_PROCESS_SERVER_CACHE/);
  assert.doesNotMatch(log, /worker polling/);
  assert.ok(!log.includes(new URL(readOnly).searchParams.get('sig')!), 'the signature is not in the log');

  // An expired SAS for the applier's replicas, likewise.
  const expired = containerSas(accountUrl, CONTAINERS.replica, 'rwdl', new Date(Date.now() - 60_000));
  await assert.rejects(
    stack.startWorker('cloud-applier', {
      ...roleEnv['cloud-applier'],
      [sasEnvName('cloud-applier', 'replica')]: expired,
    }),
    /exited 1/,
  );
  const applierLog = latestLog('cloud-applier');
  assert.match(
    applierLog,
    /storage sign-in of the cloud-applier role refused: the SAS for container osr-replica expired at /,
  );
  assert.ok(
    !applierLog.includes(new URL(expired).searchParams.get('sig')!),
    'the signature is not in the log',
  );

  assert.deepEqual(await allBlobs(account), before, 'the refused workers wrote nothing');
});

test('a request the SAS does not allow, later at run time, names the role, the container and the setting', async () => {
  // The control role only lists replicas (sp=l passes its start check); a write there is refused by storage.
  const config = loadConfig({ env: { ...stack.env, ...roleEnv.control } });
  const replicas = openRoleStorage({ ...config, storage: { ...config.storage, maxTries: 1 } }, 'control');
  const err = await replicas
    .getContainerClient(CONTAINERS.replica)
    .getBlockBlobClient('sas1/never')
    .upload('{}', 2)
    .then(
      () => assert.fail('storage took a write through a list-only SAS'),
      (e: Error) => e,
    );
  assert.match(
    err.message,
    /^control role: storage refused PUT on container osr-replica \(HTTP 403 \w+.*\); check the permissions \(sp\) and expiry of storage\.sas\.control for osr-replica$/,
  );
  assert.ok(!err.message.includes('sig='));
  assert.deepEqual(
    (await allBlobs(account)).filter((n) => n.includes('never')),
    [],
  );
});

test('no SAS signature or account key appears in a log, an audit entry or the vault', async () => {
  const secrets = [AZURITE_KEY];
  for (const env of Object.values(roleEnv))
    for (const [name, value] of Object.entries(env))
      if (name.startsWith('OSR_STORAGE_SAS_')) secrets.push(new URL(value!).searchParams.get('sig')!);
  assert.ok(secrets.length >= 10);
  const searched = await assertNoSecrets(secrets, { dirs: [stack.stateDir], account });
  assert.ok(searched > 10, `searched ${searched} places`);
});
