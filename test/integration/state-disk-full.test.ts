// The process server's state disk fills up while a point is being read (its fleecing overlay
// lives there): the protected machine's writes go on and read back as written, the point is
// given up, its cycle fails saying why, and the process server raises `state-disk-full` with the
// fix. Once space is back the next point equals the source disk and the alert clears.
// Real parts: qemu-storage-daemon and NBD, the Temporal dev server, Azurite (behind a proxy that
// slows uploads so the point is still being read), and a tmpfs of a few MiB as the process
// server's state folder, mounted and removed here (root).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { createQcow2, startStorageDaemon, type StorageDaemon } from '../../lib/qemu/storage-daemon';
import { loadKeyFile } from '../../lib/segments/keys';
import { listAlerts } from '../../operations/alerts';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { mountTmpfs, unmount } from '../chaos/fault-env';
import { startFaultProxy, type FaultProxy, type FaultRule } from '../helpers/fault-proxy';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom } from '../helpers/qemu-machine';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { createManualPolicy } from '../helpers/testbed';

const MiB = 1024 * 1024;
const SEGMENT_BYTES = 4 * MiB;
const NAME = 'crowded';
let stack: TestStack;
let ctx: ControlContext;
let proxy: FaultProxy;
let stateDisk: string | undefined;
let dir: string;
let daemon: StorageDaemon | undefined;
let source: NbdClient | undefined;

before(async () => {
  stack = await startTestStack();
  proxy = await startFaultProxy(stack.config.storage.azuritePort);
  stateDisk = await mountTmpfs(16);
  const keyFile = path.join(stack.stateDir, 'keys', 'osr.key');
  await loadKeyFile(keyFile, { create: true }); // the workers share one key, whatever their state folder
  // A small spool: the process server reads the point segment by segment as uploads go.
  const psConfig = path.join(stack.stateDir, 'ps-config.json');
  fs.writeFileSync(psConfig, JSON.stringify({ pipeline: { maxBytesInFlight: 2 * SEGMENT_BYTES } }));
  await Promise.all([
    stack.startWorker('control'),
    stack.startWorker('cloud-applier'),
    stack.startWorker('process-server', {
      OSR_STATE_DIR: stateDisk,
      OSR_KEY_FILE: keyFile,
      OSR_CONFIG: psConfig,
      OSR_AZURITE_PORT: String(proxy.port),
      OSR_UPLOAD_CONCURRENCY: '1',
      OSR_HEARTBEAT_SECONDS: '1',
    }),
  ]);
  ctx = new ControlContext(stack.config);
  await createManualPolicy(ctx);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-full-'));
  const image = path.join(dir, 'disk0.qcow2');
  await createQcow2(image, 64 * MiB);
  daemon = await startStorageDaemon({ stateDir: dir, images: [image] });
  source = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'disk0' });
  await source.write(0, pseudoRandom(32 * MiB, 3));
  await source.flush();
});

after(async () => {
  await source?.close();
  await daemon?.stop();
  await ctx?.close();
  await proxy?.close();
  await stack?.stop();
  if (stateDisk) await unmount(stateDisk);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const stateDiskAlert = async () =>
  (await listAlerts(ctx)).alerts.find((a) => a.source === 'server' && a.kind === 'state-disk-full');

/** An error's message with those of its causes (an update's failure carries the cycle's). */
function causes(err: unknown): string {
  const parts: string[] = [];
  for (let e = err as { message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e)
    parts.push(e.message ?? '');
  return parts.join(' <- ');
}

/** Fills the filesystem of `dir` with one file until it refuses more; returns the file. */
function fill(dir: string): string {
  const filler = path.join(dir, 'filler');
  const fd = fs.openSync(filler, 'w');
  try {
    const chunk = Buffer.alloc(256 * 1024, 1);
    for (;;) fs.writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
  return filler;
}

test(
  'a full state disk gives the point up, never the machine’s writes',
  { timeout: 10 * 60_000 },
  async () => {
    const disk = stateDisk as string;
    const writer = source as NbdClient;
    await machines.protect(ctx, {
      name: NAME,
      qmpSocket: daemon!.qmpSocket,
      nbdSocket: daemon!.nbdSocket,
      policy: 'manual',
    });
    await waitForStatus(ctx, NAME, (s) => s.state === 'protected' && s.lastPoint !== undefined, 240_000);
    assert.equal(await stateDiskAlert(), undefined, 'no alert while the state disk has room');

    // A delta of 24 MiB (six segments) whose uploads are slowed: the point is held while it is read.
    await writer.write(0, pseudoRandom(24 * MiB, 5));
    await writer.flush();
    const slow: FaultRule = {
      match: (method, url) =>
        method === 'PUT' && new RegExp(`/osr-cache/${NAME}/disk0/\\d+/\\d+\\.seg`).test(url),
      action: 'delay',
      delayMs: 2000,
      times: Infinity,
    };
    proxy.rules.push(slow);
    const held = machines.takePoint(ctx, NAME, { kind: 'crash' }).then(
      () => assert.fail('the point was published although its view was given up'),
      (err: Error) => err,
    );
    await until(
      'the first segment upload of the delta',
      async () => ((slow.seen ?? 0) >= 1 ? true : undefined),
      120_000,
    );
    const overlays = fs.readdirSync(path.join(disk, 'machines', NAME)).filter((f) => f.endsWith('.qcow2'));
    assert.equal(
      overlays.length,
      1,
      `the point's fleecing overlay is on the state disk (${overlays.join(', ')})`,
    );

    // The state disk is full; the machine rewrites blocks the held point still needs.
    const filler = fill(disk);
    const rewritten = pseudoRandom(16 * MiB, 9);
    await writer.write(0, rewritten); // rejects if QEMU fails the machine's write
    await writer.flush();
    assert.ok(
      (await writer.read(0, rewritten.length)).equals(rewritten),
      'the machine reads back what it wrote',
    );

    // The cycle fails saying why; its changes stay for the next one.
    const failure = await held;
    assert.match(causes(failure), /given up/);
    const failing = await waitForStatus(ctx, NAME, (s) => s.failing !== undefined, 60_000);
    assert.match(failing.failing?.reason ?? '', /given up at the source.*writes went on/);
    assert.ok(failing.alerts.some((a) => a.kind === 'cycle-failed'));

    // The process server says its state disk is full, and what to do.
    // Critical once the given-up point is noted (a warning may come first: the disk is full).
    const alert = await until(
      'the state-disk-full alert naming the point given up',
      async () => {
        const a = await stateDiskAlert();
        return a?.severity === 'critical' ? a : undefined;
      },
      30_000,
    );
    assert.match(alert.message, new RegExp(`state disk \\(${path.join(disk, 'machines')}\\)`));
    assert.match(alert.message, new RegExp(`points given up for lack of room.*${NAME}`));
    assert.match(alert.message, /Fix: free space/);

    // Space is back: the next point is the source disk, and the alert clears.
    fs.rmSync(filler);
    proxy.rules.splice(proxy.rules.indexOf(slow), 1);
    const point = await machines.takePoint(ctx, NAME, { kind: 'crash' });
    const expected = await writer.read(0, writer.size);
    assertSameImage(
      await exportedImage(ctx, await pointById(ctx, NAME, point.id)),
      expected,
      'point after the disk was freed',
    );
    const healthy = await machines.machineStatus(ctx, NAME);
    assert.equal(healthy.failing, undefined);
    await until('the alert to clear', async () => ((await stateDiskAlert()) ? undefined : true), 30_000);
  },
);
