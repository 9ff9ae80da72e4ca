// A freeze that fails after its QMP transaction ran (the source's QMP socket goes away while the
// frozen view's export is being added, so the freeze cannot clean up after itself): the frozen
// bitmap and the point's manifest stay at the source. The next cycle must release that point in
// time (merging its changes back) instead of failing on "already frozen" forever; replication
// recovers by itself and its next point equals the source, the writes before the failure included.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { createQcow2, startStorageDaemon, type StorageDaemon } from '../../lib/qemu/storage-daemon';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import { pitIdOf } from '../../shared/pit-id';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom } from '../helpers/qemu-machine';
import { startQmpGate, type QmpGate } from '../helpers/qmp-gate';
import { assertReplays } from '../helpers/replay';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { createPolicy } from '../../operations/policies';
import { createManualPolicy } from '../helpers/testbed';

const MiB = 1024 * 1024;
const NAME = 'stuckfreeze';
let stack: TestStack;
let ctx: ControlContext;
let dir: string;
let daemon: StorageDaemon;
let gate: QmpGate;

before(async () => {
  stack = await startTestStack();
  await Promise.all([
    stack.startWorker('control'),
    stack.startWorker('cloud-applier'),
    stack.startWorker('process-server'),
  ]);
  ctx = new ControlContext(stack.config);
  // Points every 15 s: the cycles after the failure come by themselves, nobody asks for them.
  await createManualPolicy(ctx);
  await createPolicy(ctx, {
    name: 'often',
    crashPointSeconds: 15,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
  });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-stuck-'));
  const image = path.join(dir, 'disk0.qcow2');
  await createQcow2(image, 16 * MiB);
  daemon = await startStorageDaemon({ stateDir: dir, images: [image] });
  await write(0, pseudoRandom(4 * MiB, 11));
  gate = await startQmpGate(daemon.qmpSocket, path.join(dir, 'qmp-gate.sock'));
});

after(async () => {
  await gate?.close();
  await daemon?.stop();
  await ctx?.close();
  await stack?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function write(offset: number, data: Buffer): Promise<void> {
  const nbd = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'disk0' });
  await nbd.write(offset, data);
  await nbd.flush();
  await nbd.close();
}

/** The points in time the source holds frozen: the manifests in the machine's work folder. */
function frozenPoints(): string[] {
  return fs
    .readdirSync(stack.stateDir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.split(path.sep).includes(NAME) && /osr-[0-9a-f]+\.json$/.test(f))
    .map(
      (f) => (JSON.parse(fs.readFileSync(path.join(stack.stateDir, f), 'utf8')) as { pitId: string }).pitId,
    );
}

test('a freeze failed after its transaction: the next cycle releases it and replication recovers', async () => {
  await machines.protect(ctx, {
    name: NAME,
    qmpSocket: gate.path,
    nbdSocket: daemon.nbdSocket,
    policy: 'often',
  });
  const first = await waitForStatus(ctx, NAME, (s) => s.state === 'protected', 180_000);
  assert.ok(first.lastPoint, 'the initial sync published a point');

  // The next scheduled cycle's freeze loses its source between the transaction and the export;
  // the changes written before it are in the bitmap that freeze switched away from.
  const cut = gate.cut((execute) => execute === 'block-export-add');
  await write(8 * MiB, pseudoRandom(2 * MiB, 12));
  await cut;
  const failed = await waitForStatus(ctx, NAME, (s) => s.failing !== undefined, 60_000);
  assert.match(failed.failing?.reason ?? '', /could not freeze/);
  // The freeze left its point in time at the source: the manifest in the machine's work folder.
  assert.deepEqual(
    frozenPoints(),
    [pitIdOf(NAME, failed.cycle)],
    'the failed freeze left its point in time behind',
  );

  // More changes while the source is away; then it answers again and nobody asks for anything.
  await write(12 * MiB, pseudoRandom(1 * MiB, 13));
  await gate.reopen();
  const handle = (await ctx.client()).workflow.getHandle(protectWorkflowId(NAME));
  const recovered = await waitForStatus(
    ctx,
    NAME,
    (s) => s.failing === undefined && s.cycle > failed.cycle && s.lastPoint?.id !== first.lastPoint?.id,
    240_000,
  ).catch(async (err: Error) => {
    const pending = (await handle.describe()).raw.pendingActivities ?? [];
    const why = pending.map((a) => a.lastFailure?.message).filter(Boolean);
    throw new Error(`${err.message}; pending activities failed with: ${why.join(' | ')}`);
  });
  // Stop the schedule before reading the source: the point compared is the last one published.
  await machines.changePolicy(ctx, NAME, 'manual');
  assert.equal(recovered.state, 'protected');
  assert.deepEqual(
    recovered.alerts.filter((a) => a.kind === 'cycle-failed' || a.kind === 'source-unreachable'),
    [],
    'the alerts cleared with the problem',
  );
  const source = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'disk0' });
  const expected = await source.read(0, source.size);
  await source.close();
  assertSameImage(
    await exportedImage(ctx, await pointById(ctx, NAME, recovered.lastPoint!.id)),
    expected,
    'the first point after the failed freeze',
  );
  assert.ok(!frozenPoints().includes(pitIdOf(NAME, failed.cycle)), 'the failed freeze was released');
  await assertReplays(handle, 'protectMachine-freeze-failure');
});
