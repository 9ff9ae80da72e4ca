// Bad input around a running protection, as an operator meets it at the CLI (see bad-input.test.ts
// for the conventions: a message naming the problem and the fix, the documented exit code, no
// stack trace, nothing lost): a raw disk whose tracking is lost at a daemon restart, and
// conflicting operations on one machine at once.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { startStorageDaemon, type StorageDaemon } from '../../lib/qemu/storage-daemon';
import type { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import type { MachineStatus } from '../../shared/contracts/protect-machine';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine } from '../helpers/qemu-machine';
import type { TestStack } from '../helpers/test-stack';
import { assertRefused, cliFor, protectArgs } from '../helpers/cli';
import { BAD_INPUT_MACHINE, useMachineTestbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let stack: TestStack;
let ctx: ControlContext;

/** Every string and byte string inside a value (a history, with its payloads' data). */
function strings(value: unknown, out: string[]): void {
  if (typeof value === 'string') out.push(value);
  else if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'));
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) strings(v, out);
}

const osr = cliFor(() => stack.env);

useMachineTestbed(BAD_INPUT_MACHINE, (bed) => ({ stack, ctx } = bed));

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

test('conflicting operations on one machine at once: one proceeds, the other is told why, nothing is lost', async () => {
  // Two protects of one name, on a machine of its own (bi1 already protects vm's disk, and a
  // second protection of a disk is refused for that reason).
  const own = await startTestMachine({ sizes: [MiB] });
  after(() => own.stop());
  const protects = await Promise.all([1, 2].map(() => osr(protectArgs('bi2', own))));
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
