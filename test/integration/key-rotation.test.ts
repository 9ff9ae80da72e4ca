// Segment key rotation on the real stack: `osr keys rotate` while a machine replicates (a cycle's
// segments wait in the cache under the old key), the running process server switches to the new
// key without a restart, segments of both keys are applied and every point restores byte for
// byte. A lost key file stops workers and the CLI at start with the file and the fix.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { retiredKeyFile } from '../../lib/segments/key-folder';
import { Keyring, loadKeyFile, type EncryptionKey } from '../../lib/segments/keys';
import { decodeSegment, peekKeyId, SegmentVerificationError } from '../../lib/segments/segment-format';
import type { RunningProcess } from '../../lib/process/managed-process';
import * as machines from '../../operations/machines';
import { statePaths } from '../../lib/config/state-paths';
import type { RecoveryPoint } from '../../shared/replication-types';
import { runCli } from '../helpers/cli';
import { assertSameImage, exportedImage, pointById } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { protectManual, startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const M = 'rot1';
const workersDir = path.resolve(__dirname, '..', '..', 'workers');
let bed: Testbed;
let vm: TestMachine;
let applier: RunningProcess;

before(async () => {
  bed = await startTestbed();
  vm = await startTestMachine({ sizes: [8 * MiB] });
  // This test's own handle on the applier, to pause it.
  await bed.stack.killWorker('cloud-applier');
  applier = await bed.stack.startWorker('cloud-applier');
});
after(async () => {
  if (applier) process.kill(applier.pid, 'SIGCONT');
  await vm?.stop();
  await bed?.stop();
});

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 120_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Writes, asks for a point, and freezes the cloud applier (SIGSTOP) as soon as the cycle's
 * transfer starts, so the cycle's segments wait in the cache until `resume`.
 */
async function pointHeldInCache(
  seed: number,
): Promise<{ image: Buffer; point: Promise<string>; segments: Buffer[]; resume: () => void }> {
  const { ctx } = bed;
  const cache = ctx.blobService.getContainerClient(CONTAINERS.cache);
  const cycles = async (file: string): Promise<string[]> => {
    const found: string[] = [];
    for await (const b of cache.listBlobsFlat({ prefix: `${M}/disk0/` }))
      if (b.name.endsWith(`/${file}`)) found.push(b.name.slice(0, -file.length));
    return found;
  };
  const before = new Set(await cycles('plan.json'));
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(4 * MiB, seed));
  await disk.flush();
  const image = await vm.readAll();
  const point = machines.takePoint(ctx, M, { kind: 'crash' }).then((p) => p.id);
  const prefix = await until(
    'the cycle transfer to start',
    async () => (await cycles('plan.json')).find((c) => !before.has(c)),
    120_000,
    10,
  );
  process.kill(applier.pid, 'SIGSTOP');
  const resume = () => process.kill(applier.pid, 'SIGCONT');
  try {
    await until('the cycle uploaded to the cache', async () =>
      (await cycles('manifest.json')).includes(prefix) ? true : undefined,
    );
    const segments: Buffer[] = [];
    for await (const b of cache.listBlobsFlat({ prefix }))
      if (b.name.endsWith('.seg')) segments.push(await cache.getBlobClient(b.name).downloadToBuffer());
    assert.ok(segments.length > 0, 'the cycle has segments');
    return { image, point, segments, resume };
  } catch (err) {
    resume();
    throw err;
  }
}

/** Decodes every segment with only `key`: proves which key encrypted them. */
function assertEncryptedWith(segments: Buffer[], key: EncryptionKey, other: EncryptionKey): void {
  for (const s of segments) {
    assert.equal(peekKeyId(s), key.id);
    assert.doesNotThrow(() => decodeSegment(Buffer.from(s), new Keyring([key])));
    assert.throws(
      () => decodeSegment(Buffer.from(s), new Keyring([other])),
      (e: unknown) => e instanceof SegmentVerificationError && e.reason === 'unknown-key',
    );
  }
}

async function checkPoint(id: string, image: Buffer, what: string): Promise<void> {
  const point: RecoveryPoint = await pointById(bed.ctx, M, id);
  assertSameImage(await exportedImage(bed.ctx, point), image, what);
}

test('rotating while a machine replicates keeps every point and cached segment readable', async () => {
  const { ctx, stack } = bed;
  const keyFile = statePaths(stack.config).defaultKeyFile;
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(MiB, 1));
  await disk.flush();
  await protectManual(ctx, M, vm);
  const first = await machines.takePoint(ctx, M, { kind: 'crash' });
  const firstImage = await vm.readAll();
  const oldKey = await loadKeyFile(keyFile);

  // A cycle under the old key waits in the cache while the key is rotated.
  const held = await pointHeldInCache(2);
  const rotated = await runCli(['keys', 'rotate', '--json'], stack.env);
  assert.equal(rotated.code, 0, rotated.stderr);
  const ids = JSON.parse(rotated.stdout) as { previous: string; current: string };
  assert.equal(ids.previous, oldKey.id);
  const newKey = await loadKeyFile(keyFile);
  assert.equal(newKey.id, ids.current);
  assert.notEqual(newKey.id, oldKey.id);
  assert.ok((await loadKeyFile(retiredKeyFile(keyFile, oldKey.id))).equals(oldKey), 'the old key is kept');
  assertEncryptedWith(held.segments, oldKey, newKey);
  held.resume();
  await checkPoint(await held.point, held.image, 'the point cut across the rotation');

  // Neither worker was restarted: the process server's next cycle is encrypted with the new key,
  // and the same applier process decrypts it.
  // The process server reloads on its own within seconds; its log line is the event waited on.
  const logs = path.join(stack.stateDir, 'logs');
  await until('the process server to load the new key', async () => {
    const text = fs
      .readdirSync(logs)
      .filter((f) => f.startsWith('process-server-'))
      .map((f) => fs.readFileSync(path.join(logs, f), 'utf8'))
      .join('');
    return /segment keys reloaded/.test(text) && text.includes(`"encryptWith":"${newKey.id}"`)
      ? true
      : undefined;
  });
  const next = await pointHeldInCache(3);
  assertEncryptedWith(next.segments, newKey, oldKey);
  next.resume();
  await checkPoint(await next.point, next.image, 'the point cut after the rotation');
  await checkPoint(first.id, firstImage, 'the point cut before everything');

  const listed = await runCli(['keys', 'list', '--json'], stack.env);
  assert.equal(listed.code, 0, listed.stderr);
  const rows = JSON.parse(listed.stdout) as {
    id: string;
    current: boolean;
    onThisHost: string;
    createdAt: string;
  }[];
  assert.deepEqual(
    rows.map((r) => [r.id, r.current, r.onThisHost]),
    [
      [oldKey.id, false, 'present'],
      [newKey.id, true, 'present'],
    ],
  );
  assert.ok(rows.every((r) => !Number.isNaN(Date.parse(r.createdAt))));
  const text = (await runCli(['keys', 'list'], stack.env)).stdout;
  const keyText = (await fs.promises.readFile(keyFile, 'utf8')).trim();
  assert.ok(!text.includes(keyText) && !listed.stdout.includes(keyText), 'no key material is listed');
});

test('a lost key file stops a worker and the CLI at start, naming the file and the fix', async () => {
  const { stack } = bed;
  const keyFile = statePaths(stack.config).defaultKeyFile;
  const retired = fs.readdirSync(path.join(path.dirname(keyFile), 'retired'))[0]!;
  const lost = path.join(path.dirname(keyFile), 'retired', retired);
  const aside = `${lost}.aside`;
  fs.renameSync(lost, aside);
  try {
    const child = spawn(process.execPath, [path.join(workersDir, 'cloud-applier.js')], {
      env: stack.env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`key file ${lost.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is missing`));
    assert.match(stderr, /Restore .* from your backup/);
    assert.doesNotMatch(stderr, /corrupt|auth-failed|rejected/);

    const rotate = await runCli(['keys', 'rotate'], stack.env);
    assert.equal(rotate.code, 2);
    assert.match(rotate.stderr, /is missing: the vault records segment key .* Restore/);
    const list = await runCli(['keys', 'list', '--json'], stack.env);
    assert.equal(list.code, 0);
    assert.match(list.stderr, /is missing on this host/);
  } finally {
    fs.renameSync(aside, lost);
  }
  const again = await runCli(['keys', 'list', '--json'], stack.env);
  assert.ok((JSON.parse(again.stdout) as { onThisHost: string }[]).every((r) => r.onThisHost === 'present'));
});
