// Storage sign-in through Microsoft Entra ID (storage.auth "entra") end to end: the real
// DefaultAzureCredential in every worker and in the control plane takes its managed-identity path
// (the App Service endpoint, played by a local stand-in issuing tokens for https://storage.azure.com),
// and Azurite runs with `--oauth basic` over HTTPS with its own certificate, which OSR trusts
// through storage.caFile (TLS checks stay on). Protect, a point and a drill work; a sign-in the
// endpoint refuses stops the worker with the credential chain's reason; the identity secret does
// not leak.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { AnonymousCredential, ContainerClient, type BlobServiceClient } from '@azure/storage-blob';
import {
  AZURITE_ACCOUNT,
  AZURITE_KEY,
  CONTAINERS,
  createBlobServiceClient,
  ensureContainers,
  withStoragePolicies,
} from '../../lib/azure/blob-client';
import { loadConfig } from '../../lib/config/config';
import { ControlContext } from '../../operations/context';
import { startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import {
  allBlobs,
  assertNoSecrets,
  drillAndCleanup,
  protectAndPoint,
  selfSignedCert,
  startTokenEndpoint,
  type TokenEndpoint,
} from '../helpers/sign-in-fixture';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { stopPid, type RunningProcess } from '../../lib/process/managed-process';

const MiB = 1024 * 1024;
let dir: string;
let tokens: TokenEndpoint;
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
let running: RunningProcess[] = [];
let account: BlobServiceClient;
let entraEnv: NodeJS.ProcessEnv;
let caFile: string;
let accountUrl: string;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-entra-'));
  const cert = selfSignedCert(dir);
  caFile = cert.certPath;
  tokens = await startTokenEndpoint();
  stack = await startTestStack({ azuriteTls: { ...cert, oauth: 'basic' } });
  accountUrl = `https://127.0.0.1:${stack.config.storage.azuritePort}/${AZURITE_ACCOUNT}`;
  // The operator's part, with the account key: the containers exist.
  account = createBlobServiceClient(
    loadConfig({
      env: {
        ...stack.env,
        OSR_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=https;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${accountUrl};`,
        OSR_STORAGE_CA_FILE: caFile,
      },
    }),
  );
  await ensureContainers(account);
  entraEnv = {
    OSR_STORAGE_AUTH: 'entra',
    OSR_STORAGE_ACCOUNT_URL: accountUrl,
    OSR_STORAGE_CA_FILE: caFile,
    ...tokens.env,
  };
  // Kept: a refused worker started later takes its role's place in the test stack's list.
  running = await Promise.all([
    stack.startWorker('control', entraEnv),
    stack.startWorker('cloud-applier', entraEnv),
    stack.startWorker('process-server', entraEnv),
  ]);
  // This process's DefaultAzureCredential takes the same managed-identity path.
  Object.assign(process.env, tokens.env);
  ctx = new ControlContext(loadConfig({ env: { ...stack.env, ...entraEnv } }));
  vm = await startTestMachine({ sizes: [8 * MiB] });
});

after(async () => {
  await Promise.all(running.map((w) => stopPid(w.pid, 10_000)));
  await vm?.stop();
  await ctx?.close();
  await stack?.stop();
  await tokens?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('signed in through Entra ID (managed identity): protect, a recovery point and a drill', async () => {
  // Without a token the containers are closed: what the workers did, they did with their tokens.
  const anonymous = withStoragePolicies(
    new ContainerClient(`${accountUrl}/${CONTAINERS.vault}`, new AnonymousCredential(), {
      retryOptions: { maxTries: 1 },
    }),
    loadConfig({ env: { ...stack.env, OSR_STORAGE_CA_FILE: caFile } }),
  );
  await assert.rejects(
    anonymous.listBlobsFlat().byPage({ maxPageSize: 1 }).next(),
    (err: { statusCode?: number }) => {
      assert.ok(
        err.statusCode === 403 || err.statusCode === 404,
        `anonymous listing answered ${err.statusCode}`,
      );
      return true;
    },
  );
  await drillAndCleanup(ctx, account, 'entra1', await protectAndPoint(ctx, account, vm, 'entra1'));
  // One token per process at least: three workers and this control plane, for storage.
  assert.ok((tokens.issued.get('https://storage.azure.com') ?? 0) >= 4, JSON.stringify([...tokens.issued]));
  assert.deepEqual([...tokens.issued.keys()], ['https://storage.azure.com']);
});

test("an Entra ID sign-in the identity endpoint refuses stops the worker with the chain's reason", async () => {
  const before = await allBlobs(account);
  const wrong = 'f'.repeat(32);
  await assert.rejects(
    stack.startWorker('master-target', { ...entraEnv, IDENTITY_HEADER: wrong }),
    /exited 1/,
  );
  const logs = path.join(stack.stateDir, 'logs');
  const file = fs
    .readdirSync(logs)
    .filter((f) => f.startsWith('master-target-'))
    .sort()
    .at(-1)!;
  const log = fs.readFileSync(path.join(logs, file), 'utf8');
  assert.match(
    log,
    /master-target role: sign-in to storage through Microsoft Entra ID failed \(DefaultAzureCredential\)/,
  );
  assert.match(log, /ManagedIdentityCredential/);
  assert.match(log, /Fix: give this process an identity/);
  assert.ok(!log.includes(wrong), 'the identity header is not in the log');
  assert.deepEqual(await allBlobs(account), before, 'the refused worker wrote nothing');
});

test('no identity secret, token or account key appears in a log, an audit entry or the vault', async () => {
  const searched = await assertNoSecrets([tokens.header, AZURITE_KEY], { dirs: [stack.stateDir], account });
  assert.ok(searched > 10, `searched ${searched} places`);
});
