// Invariant 5 (keys and secrets never appear in clear) and the API's transport security, on a real
// stack: the storage account is an Azurite account with a random key (not the public development
// one), the segment key comes from OSR_ENCRYPTION_KEY, the alert webhook is signed with a secret,
// and `osr serve` makes its own TLS certificate. After a realistic flow (protect, cycles, drills of
// the machine and of a plan, API calls with the bearer token) every workflow history, every log
// file and every blob is searched for each secret in every encoding it could leak in. Then a
// segment altered at rest in osr-cache is refused by its authentication tag (invariant 4).
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { cycleManifestBlobName } from '../../lib/segments/cycle-layout';
import { createCloudApplierActivities } from '../../activities/cloud-applier';
import { createDataPathDeps } from '../../activities/deps';
import { segmentBlobName } from '../../lib/segments/segment-format';
import { resolveApiToken } from '../../api/token';
import { loadConfig, type OsrConfig } from '../../lib/config/config';
import { ControlContext } from '../../operations/context';
import { createPolicy } from '../../operations/policies';
import { startAzurite } from '../../stack/azurite';
import {
  spawnManaged,
  stopPid,
  waitForLogLine,
  type RunningProcess,
} from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';
import { CLOUD_APPLIER_TASK_QUEUE } from '../../shared/task-queues';
import { connectClient } from '../../operations/temporal-client';
import { temporalConnectionOptions } from '../../operations/temporal-connection';
import { createLogger } from '../../lib/config/logger';
import { startTemporalDevServer } from '../../temporal-dev/dev-server';
import { exportedImage, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const M = 'sec1';
const build = path.resolve(__dirname, '..', '..');
const cli = path.join(build, 'cli', 'main.js');
const temporalBinary =
  process.env.OSR_TEMPORAL_BINARY ?? path.resolve(build, '..', '.osr', 'bin', 'temporal');

// The secrets of this stack.
const encryptionKey = randomBytes(32);
const account = 'osrsecrets';
const accountKey = randomBytes(64);
const webhookSecret = randomBytes(24).toString('base64url');

let stateDir: string;
let logs: string;
let env: NodeJS.ProcessEnv;
let config: OsrConfig;
let ctx: ControlContext;
let client: Client;
let vm: TestMachine;
const parts: RunningProcess[] = [];
/** Receives the control worker's alert webhook (signed with webhookSecret). */
let webhook: http.Server;
/** What every `osr` command of the flow printed: the operator's terminal is a place to leak too. */
const cliOutput: string[] = [];

async function osr(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let result: { code: number; stdout: string; stderr: string };
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [cli, ...args], {
      env,
      timeout: 180_000,
    });
    result = { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    result = { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
  cliOutput.push(`$ osr ${args.join(' ')}\n${result.stdout}${result.stderr}`);
  return result;
}

before(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-secrets-'));
  logs = path.join(stateDir, 'logs');
  const [temporalPort, azuritePort] = [await freePort(), await freePort()];
  parts.push(
    await startTemporalDevServer({
      binary: temporalBinary,
      port: temporalPort,
      uiPort: 0,
      headless: true,
      namespace: 'default',
      logFile: path.join(logs, 'temporal.log'),
    }),
  );
  // Azurite serves only this account (the public development account is off).
  process.env.AZURITE_ACCOUNTS = `${account}:${accountKey.toString('base64')}`;
  try {
    parts.push(await startAzurite({ port: azuritePort, logFile: path.join(logs, 'azurite.log') }));
  } finally {
    delete process.env.AZURITE_ACCOUNTS;
  }
  webhook = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end());
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  env = {
    ...process.env,
    OSR_ALERT_WEBHOOK_URL: `http://127.0.0.1:${(webhook.address() as { port: number }).port}/alerts`,
    OSR_ALERT_WEBHOOK_SECRET: webhookSecret,
    OSR_CONFIG: path.join(stateDir, 'osr.config.json'),
    OSR_STATE_DIR: stateDir,
    OSR_TEMPORAL_PORT: String(temporalPort),
    OSR_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=http;AccountName=${account};AccountKey=${accountKey.toString('base64')};BlobEndpoint=http://127.0.0.1:${azuritePort}/${account};`,
    OSR_ENCRYPTION_KEY: encryptionKey.toString('base64'),
    // The most verbose level the workers have: more log lines, more chances to leak.
    OSR_LOG_LEVEL: 'debug',
  };
  delete env.OSR_TEMPORAL_ADDRESS;
  delete env.AZURE_STORAGE_CONNECTION_STRING;
  delete env.OSR_API_TOKEN;
  fs.writeFileSync(env.OSR_CONFIG as string, '{}');
  config = loadConfig({ env });
  client = await connectClient(config);
  for (const role of ['control', 'process-server', 'cloud-applier']) {
    const logFile = path.join(logs, `${role}.log`);
    const proc = spawnManaged({
      name: role,
      command: process.execPath,
      args: [path.join(build, 'workers', `${role}.js`)],
      logFile,
      env,
    });
    parts.push(proc);
    await waitForLogLine(logFile, 'worker polling', proc.exited, 90_000);
  }
  ctx = new ControlContext(config);
  await createPolicy(ctx, {
    name: 'manual',
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
  });
  vm = await startTestMachine({ sizes: [16 * MiB] });
});

after(async () => {
  await vm?.stop();
  await ctx?.close();
  await client?.connection.close();
  // Workers first, then Azurite and Temporal.
  for (const p of [...parts].reverse()) await stopPid(p.pid, 10_000);
  await new Promise((r) => webhook?.close(r));
  if (!process.env.OSR_KEEP_TEST_STATE) fs.rmSync(stateDir, { recursive: true, force: true });
});

interface ServeProcess {
  child: ChildProcess;
  output: () => string;
  url: string;
  stop(): Promise<void>;
}

/** `osr serve --port 0`, its output to the test (a terminal) or to a log file. */
async function startServe(logFile?: string): Promise<ServeProcess> {
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  const sink = logFile ? fs.createWriteStream(logFile, { flags: 'a' }) : undefined;
  for (const stream of [child.stdout, child.stderr]) {
    stream?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      sink?.write(chunk);
    });
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // The last line `osr serve` prints at start says where the token is.
  const ready = /API token[^\n]*\n(?: {2}\S+\nUse it as[^\n]*\n)?/;
  const deadline = Date.now() + 60_000;
  while (!ready.test(text)) {
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('wait'), 100))]);
    if (code !== 'wait') assert.fail(`osr serve exited with ${String(code)}:\n${text}`);
    assert.ok(Date.now() < deadline, `osr serve did not start:\n${text}`);
  }
  const url = /osr API listening on (\S+)/.exec(text)?.[1];
  assert.ok(url, text);
  return {
    child,
    output: () => text,
    url,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      await new Promise<void>((r) => (sink ? sink.end(() => r()) : r()));
    },
  };
}

interface Reply {
  status: number;
  body: string;
}

function httpsCall(
  url: string,
  options: { ca?: Buffer; token?: string; method?: string; body?: unknown } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = https.request(
      url,
      {
        method: options.method ?? 'GET',
        ca: options.ca,
        headers: {
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          ...(payload ? { 'content-type': 'application/json' } : {}),
        },
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const tlsDir = () => path.join(stateDir, 'api', 'tls');

test('osr serve speaks TLS with a certificate it makes at first start, keeps, and prints the fingerprint of', async () => {
  const first = await startServe();
  let fingerprint: string;
  let token: string;
  try {
    const out = first.output();
    assert.match(first.url, /^https:\/\/127\.0\.0\.1:\d+$/, out);
    assert.match(out, /self-signed, made now/);
    fingerprint = /SHA-256 fingerprint: ([0-9A-F:]{95})/.exec(out)?.[1] ?? '';
    assert.ok(fingerprint, out);
    token = /API token \(shown once[^\n]*\n {2}(\S+)/.exec(out)?.[1] ?? '';
    assert.ok(token.length >= 40, out);

    // The pair lives under the state folder; only the operator can read the key.
    const [certPath, keyPath] = [path.join(tlsDir(), 'cert.pem'), path.join(tlsDir(), 'key.pem')];
    assert.equal(fs.statSync(keyPath).mode & 0o777, 0o600, 'key mode');
    assert.equal(fs.statSync(tlsDir()).mode & 0o777, 0o700, 'folder mode');
    const certPem = fs.readFileSync(certPath);
    const cert = new X509Certificate(certPem);
    assert.equal(cert.fingerprint256, fingerprint, 'the printed fingerprint is the certificate’s');
    assert.ok(cert.checkIP('127.0.0.1'), 'valid for 127.0.0.1');
    assert.ok(cert.checkHost('localhost'), 'valid for localhost');
    assert.doesNotMatch(out, /BEGIN/, 'no PEM is printed');

    // Trusting that certificate: healthz, and /v1 only with the token.
    assert.equal((await httpsCall(`${first.url}/healthz`, { ca: certPem })).status, 200);
    const refused = await httpsCall(`${first.url}/v1/machines`, { ca: certPem });
    assert.equal(refused.status, 401, refused.body);
    const wrong = await httpsCall(`${first.url}/v1/machines`, { ca: certPem, token: `${token}x` });
    assert.equal(wrong.status, 401, wrong.body);
    const ok = await httpsCall(`${first.url}/v1/machines`, { ca: certPem, token });
    assert.equal(ok.status, 200, ok.body);

    // Pinning by fingerprint, as a client without the file would.
    const port = Number(new URL(first.url).port);
    const seen = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.end();
      });
      socket.on('error', reject);
    });
    assert.equal(seen, fingerprint);

    // A client that trusts only the public CAs refuses it: this is TLS, not a formality.
    await assert.rejects(httpsCall(`${first.url}/healthz`), /self[- ]signed/i);
    // Plain HTTP to the TLS port gets no answer from the API: the connection is dropped.
    const plain = await new Promise<string>((resolve) => {
      const req = http.get(`http://127.0.0.1:${port}/v1/machines`, { agent: false }, (res) => {
        res.resume();
        resolve(`answered ${res.statusCode}`);
      });
      req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
    });
    assert.match(plain, /^error (ECONNRESET|EPIPE)/);
  } finally {
    await first.stop();
  }

  // The second start keeps the certificate (same fingerprint) and the token, and prints neither secret.
  const second = await startServe();
  try {
    const out = second.output();
    assert.match(out, new RegExp(`SHA-256 fingerprint: ${fingerprint}`));
    assert.doesNotMatch(out, /made now/);
    assert.ok(!out.includes(token), 'the token is printed only when it is made');
    assert.match(out, /API token: in .*api\/token/);
  } finally {
    await second.stop();
  }

  // A configured pair that is wrong is named with the fix (exit 2), before anything listens.
  const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-tls-'));
  try {
    const otherKey = path.join(otherDir, 'other-key.pem');
    await execFileAsync('openssl', [
      'genpkey',
      '-algorithm',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-out',
      otherKey,
    ]);
    const certPath = path.join(tlsDir(), 'cert.pem');
    for (const [tlsConfig, message] of [
      [
        { certPath: path.join(otherDir, 'none.pem'), keyPath: otherKey },
        /cannot read the API's TLS certificate .*none\.pem: .*Fix: point api\.tls\.certPath at a PEM certificate/,
      ],
      [
        { certPath, keyPath: otherKey },
        /the API's TLS key .*other-key\.pem does not belong to the certificate .*cert\.pem\. Fix: give api\.tls the certificate and its own key/,
      ],
    ] as const) {
      fs.writeFileSync(env.OSR_CONFIG as string, JSON.stringify({ api: { tls: tlsConfig } }));
      const refused = await osr('serve', '--port', '0');
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, message);
    }
  } finally {
    fs.writeFileSync(env.OSR_CONFIG as string, '{}');
    fs.rmSync(otherDir, { recursive: true, force: true });
  }

  // api.insecureHttp serves plain HTTP, and says what that means.
  fs.writeFileSync(env.OSR_CONFIG as string, JSON.stringify({ api: { insecureHttp: true } }));
  try {
    const plain = await startServe();
    try {
      assert.match(plain.url, /^http:\/\//);
      assert.match(plain.output(), /TLS: off \(api\.insecureHttp\)/);
      assert.equal((await fetch(`${plain.url}/healthz`)).status, 200);
    } finally {
      await plain.stop();
    }
  } finally {
    fs.writeFileSync(env.OSR_CONFIG as string, '{}');
  }
});

/** Every string and byte string inside a value (a history event, with its payloads' raw data). */
function strings(value: unknown, out: string[]): void {
  if (typeof value === 'string') out.push(value);
  else if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('latin1'));
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) strings(v, out);
}

function filesUnder(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

test('after protect, cycles, a drill and API calls, no key or token is in any history, log or blob', async () => {
  // The token file as an earlier `osr serve` left it (made now if this test runs alone).
  const { token } = resolveApiToken(config);
  const protectedNow = await osr(
    'protect',
    M,
    '--qmp',
    vm.daemon.qmpSocket,
    '--nbd',
    vm.daemon.nbdSocket,
    '--policy',
    'manual',
  );
  assert.equal(protectedNow.code, 0, protectedNow.stderr);
  await waitForStatus(ctx, M, (s) => s.state === 'protected');
  const disk = await vm.disk();
  for (let i = 0; i < 3; i++) {
    await disk.write(i * 2 * MiB, pseudoRandom(MiB, 40 + i));
    await disk.flush();
    const point = await osr('point', M, '--tag', `cycle-${i}`);
    assert.equal(point.code, 0, point.stderr);
  }
  const drill = await osr('failover', 'test', M, '--json');
  assert.equal(drill.code, 0, drill.stderr);
  const cleanup = await osr('failover', 'cleanup', M);
  assert.equal(cleanup.code, 0, cleanup.stderr);
  // A recovery plan's drill and cleanup: plan workflows with child workflows.
  for (const args of [
    ['plan', 'create', 'sp', '--group', M, '--post-script', 'g1:true'],
    ['plan', 'test-failover', 'sp'],
    ['plan', 'cleanup', 'sp'],
  ]) {
    const res = await osr(...args);
    assert.equal(res.code, 0, `osr ${args.join(' ')}: ${res.stderr}`);
  }
  const status = await osr('status', M, '--json', '--no-follow');
  assert.equal(status.code, 0, status.stderr);

  // The API, over its TLS, with the bearer token; its log goes where the stack's logs are.
  const api = await startServe(path.join(logs, 'api.log'));
  try {
    const ca = fs.readFileSync(path.join(tlsDir(), 'cert.pem'));
    assert.equal((await httpsCall(`${api.url}/v1/machines`, { ca, token })).status, 200);
    const cut = await httpsCall(`${api.url}/v1/machines/${M}/points`, {
      ca,
      token,
      method: 'POST',
      body: { kind: 'crash', tag: 'api' },
    });
    assert.equal(cut.status, 201, cut.body);
    assert.equal((await httpsCall(`${api.url}/v1/jobs`, { ca, token })).status, 200);
    assert.equal((await httpsCall(`${api.url}/v1/machines`, { ca, token: 'not-the-token' })).status, 401);
  } finally {
    await api.stop();
  }
  assert.ok((await ctx.vault.points(M)).length >= 4, 'the flow made its points');

  // Where to look.
  const haystacks: Array<[string, string]> = [];
  let histories = 0;
  for await (const wf of client.workflow.list()) {
    const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    const found: string[] = [];
    strings(history, found);
    haystacks.push([`history of ${wf.workflowId} (${wf.runId})`, found.join('\n')]);
    histories += 1;
  }
  for (const file of filesUnder(logs)) haystacks.push([`log ${file}`, fs.readFileSync(file, 'latin1')]);
  haystacks.push(['the flow’s CLI output', cliOutput.join('\n')]);
  let blobs = 0;
  for await (const container of ctx.blobService.listContainers()) {
    const cc = ctx.blobService.getContainerClient(container.name);
    for await (const blob of cc.listBlobsFlat({ includeMetadata: true, includeSnapshots: true })) {
      const client = blob.snapshot
        ? cc.getBlobClient(blob.name).withSnapshot(blob.snapshot)
        : cc.getBlobClient(blob.name);
      const body = await client.downloadToBuffer();
      haystacks.push([
        `blob ${container.name}/${blob.name}${blob.snapshot ? `@${blob.snapshot}` : ''}`,
        `${JSON.stringify(blob.metadata ?? {})}\n${body.toString('latin1')}`,
      ]);
      blobs += 1;
    }
  }

  // The search works: it sees into payloads (the QMP path is in protect's input) and the vault.
  for (const kind of [
    `protect/${M}`,
    `drill/${M}/`,
    `drill-cleanup/${M}/`,
    'plan/sp/test-failover/',
    'plan/sp/cleanup/',
  ])
    assert.ok(
      haystacks.some(([where]) => where.startsWith(`history of ${kind}`)),
      `the history of ${kind} is searched`,
    );
  assert.ok(blobs >= 10, `blobs: ${blobs}`);
  assert.ok(
    haystacks.some(
      ([where, text]) => where.startsWith(`history of protect/${M}`) && text.includes(vm.daemon.qmpSocket),
    ),
    'payloads are searched decoded',
  );
  assert.ok(
    haystacks.some(([where, text]) => where === `blob osr-vault/machines/${M}.json` && text.includes(M)),
    'the vault is searched',
  );

  const unpadded = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
  const needles: Array<[string, string]> = [
    ['encryption key (base64)', unpadded(encryptionKey)],
    ['encryption key (base64url)', encryptionKey.toString('base64url')],
    ['encryption key (hex)', encryptionKey.toString('hex')],
    ['encryption key (HEX)', encryptionKey.toString('hex').toUpperCase()],
    ['encryption key (raw bytes)', encryptionKey.toString('latin1')],
    ['API token', token],
    ['API token (base64)', unpadded(Buffer.from(token))],
    ['storage account key (base64)', unpadded(accountKey)],
    ['storage account key (base64url)', accountKey.toString('base64url')],
    ['storage account key (hex)', accountKey.toString('hex')],
    ['storage account key (raw bytes)', accountKey.toString('latin1')],
    ['alert webhook secret', webhookSecret],
  ];
  // And it would find them: the token file holds the token, the environment the other secrets.
  assert.ok(fs.readFileSync(path.join(stateDir, 'api', 'token'), 'latin1').includes(token));
  assert.ok(
    JSON.stringify(env).includes(unpadded(accountKey)) &&
      JSON.stringify(env).includes(unpadded(encryptionKey)) &&
      JSON.stringify(env).includes(webhookSecret),
  );

  const leaks: string[] = [];
  for (const [where, text] of haystacks)
    for (const [what, needle] of needles) if (text.includes(needle)) leaks.push(`${what} in ${where}`);
  assert.deepEqual(leaks, [], `secrets found:\n${leaks.join('\n')}`);
  process.stdout.write(
    `# searched ${histories} workflow histories, ${filesUnder(logs).length} log files, ${blobs} blobs and snapshots for ${needles.length} encodings of 4 secrets\n`,
  );
});

test('a segment altered in osr-cache fails its authentication tag: never applied, sent again, the point is the disk', async () => {
  await waitForStatus(ctx, M, (s) => s.state === 'protected');
  // The cloud applier runs in this process for this test, with the real activities; its
  // applyCycle first waits at a gate, so the test alters a segment at rest between the upload and
  // the apply, and it looks at the replica right after the applier refused it.
  const applierIndex = parts.findIndex((p) => p.name === 'cloud-applier');
  const child = parts[applierIndex]!;
  process.kill(child.pid, 'SIGKILL');
  await child.exited;
  parts.splice(applierIndex, 1);
  const deps = await createDataPathDeps(config, createLogger('test-applier', 'warn'));
  const real = createCloudApplierActivities(deps);
  const replica = ctx.blobService.getContainerClient('osr-replica').getPageBlobClient(`${M}/disk0`);
  let reached: (cycle: number) => void = () => undefined;
  const atGate = new Promise<number>((r) => (reached = r));
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => (release = r));
  let refused: { error: string; replica: Buffer } | undefined;
  let armed = true;
  const activities = {
    ...real,
    async applyCycle(input: Parameters<typeof real.applyCycle>[0]) {
      if (!armed || input.machine !== M) return real.applyCycle(input);
      armed = false;
      reached(input.cycle);
      await released;
      try {
        return await real.applyCycle(input);
      } catch (err) {
        refused = { error: String((err as Error).message), replica: await replica.downloadToBuffer() };
        throw err;
      }
    },
  };
  const connection = await NativeConnection.connect(temporalConnectionOptions(config));
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: CLOUD_APPLIER_TASK_QUEUE,
    activities,
  });
  const running = worker.run();
  try {
    const disk = await vm.disk();
    await disk.write(3 * MiB, pseudoRandom(2 * MiB, 77));
    await disk.flush();
    const pointDone = osr('point', M, '--json');

    const cycle = await atGate;
    const cache = ctx.blobService.getContainerClient('osr-cache');
    const manifest = JSON.parse(
      (
        await cache.getBlockBlobClient(cycleManifestBlobName(M, 'disk0', cycle)).downloadToBuffer()
      ).toString(),
    ) as { segments: number };
    assert.equal(manifest.segments, 1, 'one segment: 2 MiB of changes');
    const segment = cache.getBlockBlobClient(segmentBlobName(M, 'disk0', cycle, 0));
    const tampered = await segment.downloadToBuffer();
    const at = Math.floor(tampered.length / 2);
    tampered[at] = tampered[at]! ^ 0x01;
    await segment.uploadData(tampered);
    const replicaBefore = await replica.downloadToBuffer();
    release();

    const point = await pointDone;
    assert.equal(point.code, 0, point.stderr);
    assert.ok(refused, 'the applier refused the altered segment');
    assert.match(refused.error, /auth-failed/, 'refused by its authentication tag');
    assert.ok(refused.replica.equals(replicaBefore), 'nothing of it reached the replica');

    const status = await waitForStatus(ctx, M, (s) => s.state === 'protected');
    const alert = status.alerts.find((a) => a.kind === 'segment-corrupt');
    assert.ok(alert, JSON.stringify(status.alerts));
    assert.match(
      alert.message,
      /segments 0 of disk0 .*failed verification in the cache and were not applied; sending them again/,
    );
    // The segment was sent again and applied: the point is the disk.
    const id = (JSON.parse(point.stdout) as { id: string }).id;
    const recorded = (await ctx.vault.points(M)).find((p) => p.id === id);
    assert.ok(recorded);
    assert.ok(
      (await exportedImage(ctx, recorded)).equals(await vm.readAll()),
      'the point equals the source disk',
    );
  } finally {
    release();
    worker.shutdown();
    await running;
    await connection.close();
    await deps.pipeline.destroy();
  }
});
