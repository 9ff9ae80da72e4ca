// Invariant 5 (keys and secrets never appear in clear) on a real stack: the storage account is an
// Azurite account with a random key (not the public development one), the segment key comes from
// OSR_ENCRYPTION_KEY and the alert webhook is signed with a secret. After a realistic flow
// (protect, cycles, drills of the machine and of a plan, API calls with the bearer token) every
// workflow history, every log file and every blob is searched for each secret in every encoding it
// could leak in. Then a segment altered at rest in osr-cache is refused by its authentication tag
// (invariant 4). The API's transport security (`osr serve` and its TLS certificate):
// secrets-tls.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { NativeConnection, Worker } from '@temporalio/worker';
import { cycleManifestBlobName } from '../../lib/segments/cycle-layout';
import { createCloudApplierActivities } from '../../activities/cloud-applier';
import { createDataPathDeps } from '../../activities/deps';
import { createBlobServiceClient } from '../../lib/azure/blob-client';
import { segmentBlobName } from '../../lib/segments/segment-format';
import { resolveApiToken } from '../../api/token';
import { CLOUD_APPLIER_TASK_QUEUE } from '../../shared/task-queues';
import { temporalConnectionOptions } from '../../operations/temporal-connection';
import { createLogger } from '../../lib/config/logger';
import { exportedImage, waitForStatus } from '../helpers/protection';
import { pseudoRandom } from '../helpers/qemu-machine';
import {
  MiB,
  M,
  encryptionKey,
  accountKey,
  webhookSecret,
  stateDir,
  logs,
  env,
  config,
  ctx,
  client,
  vm,
  parts,
  cliOutput,
  osr,
  startServe,
  httpsCall,
  tlsDir,
  useSecretsStack,
} from '../helpers/secrets-fixture';
import { protectArgs } from '../helpers/cli';

useSecretsStack();

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
  const protectedNow = await osr(...protectArgs(M, vm));
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
  const account = createBlobServiceClient(config);
  for await (const container of account.listContainers()) {
    const cc = account.getContainerClient(container.name);
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
  const deps = await createDataPathDeps(config, createLogger('test-applier', 'warn'), 'cloud-applier');
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
