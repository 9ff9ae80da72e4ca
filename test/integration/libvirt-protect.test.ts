// A libvirt domain protected through libvirt's own checkpoints and pull-mode backups, against a
// real libvirtd (Debian's, a private session daemon: test/helpers/libvirt-daemon.ts) running the
// test guest under TCG. The guest writes numbered records (one synced sector each); every point
// must hold a prefix of them that includes every record acknowledged before the point was asked
// for. libvirtd restarts mid-cycle, the guest reboots, the domain is powered off and on (its
// bitmaps lost: a resync by checksums with an alert), and unprotect leaves no checkpoint, bitmap
// or backup job.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { storeHost } from '../../operations/hosts';
import { virsh } from '../../lib/libvirt/virsh';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { startLibvirtDaemon, type LibvirtDaemon } from '../helpers/libvirt-daemon';
import { startLibvirtTestVm, type LibvirtTestVm } from '../helpers/libvirt-vm';
import { recordsIn } from '../helpers/test-vm';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const NAME = 'lv1';
let bed: Testbed;
let daemon: LibvirtDaemon;
let vm: LibvirtTestVm;
let written = 0;

before(async () => {
  daemon = await startLibvirtDaemon();
  // The machine is served by its host's process server: the host is added before it starts.
  bed = await startTestbed({
    processServerEnv: async (stack) => {
      const ctx = new ControlContext(stack.config);
      await storeHost(ctx, {
        name: 'lvhost',
        site: stack.config.site,
        connection: { kind: 'libvirt', uri: daemon.uri },
      });
      await ctx.close();
      return { OSR_PROCESS_SERVER_HOSTS: 'lvhost' };
    },
  });
  vm = await startLibvirtTestVm(daemon, { name: NAME, disks: [{ sizeBytes: 8 * MiB }] });
});

after(async () => {
  await vm?.remove().catch(() => undefined);
  await daemon?.stop();
  await bed?.stop();
});

/** The source disk as it is now (read beside the running domain, as libvirt's own tools can). */
function sourceImage(): Buffer {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-lvsrc-'));
  try {
    const raw = path.join(tmp, 'disk.raw');
    execFileSync('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', vm.disks[0]!.file, raw]);
    return fs.readFileSync(raw);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Every string in a (history) object, to search its words. */
function strings(value: unknown, out: string[]): void {
  if (typeof value === 'string') out.push(value);
  else if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'));
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) strings(v, out);
}

async function osrCheckpointsNow(): Promise<string[]> {
  return (await virsh(daemon.uri, ['checkpoint-list', '--name', '--', NAME])).split('\n').filter(Boolean);
}

async function writeRecords(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await vm.writeRecord(0, ++written);
}

/** Asks for a point while the guest writes; returns the records acknowledged before the request, and the point's records. */
async function pointUnderLoad(): Promise<{ ackedBefore: number; records: number[]; writtenAfter: number }> {
  let running = true;
  const load = (async () => {
    while (running) await vm.writeRecord(0, ++written);
  })();
  try {
    while (written < 3) await new Promise((r) => setTimeout(r, 20));
    const ackedBefore = written - 1; // the record in flight may or may not be in
    const taken = await machines.takePoint(bed.ctx, NAME, { kind: 'crash' });
    const point = await pointById(bed.ctx, NAME, taken.id);
    const records = recordsIn(await exportedImage(bed.ctx, point, 'vda')).map((r) => r.record);
    return { ackedBefore, records, writtenAfter: written };
  } finally {
    running = false;
    await load;
  }
}

function assertPrefix(
  r: { ackedBefore: number; records: number[]; writtenAfter: number },
  what: string,
): void {
  const max = r.records.length ? Math.max(...r.records) : 0;
  assert.deepEqual(
    r.records,
    Array.from({ length: max }, (_, i) => i + 1),
    `${what}: the point holds records 1..${max} with no gap`,
  );
  assert.ok(
    max >= r.ackedBefore,
    `${what}: every record acknowledged before the request is in (${max} ≥ ${r.ackedBefore})`,
  );
  assert.ok(max <= r.writtenAfter, `${what}: no record from the future`);
}

test('protect: the first point equals the source disk, through a checkpoint of libvirt', async () => {
  await writeRecords(5);
  const started = await machines.protect(bed.ctx, {
    name: NAME,
    host: 'lvhost',
    domain: NAME,
    policy: 'manual',
  });
  assert.equal(started.machine.host, 'lvhost', "served by its host's process servers");
  assert.deepEqual(started.machine.source, {
    type: 'libvirt',
    host: 'lvhost',
    uri: daemon.uri,
    domain: NAME,
    disks: undefined,
  });
  const status = await waitForStatus(bed.ctx, NAME, (s) => s.state === 'protected');
  const point = await pointById(bed.ctx, NAME, status.lastPoint!.id);
  assert.ok(
    sourceImage().equals(await exportedImage(bed.ctx, point, 'vda')),
    'the first point is the source disk byte for byte',
  );
  const checkpoints = await osrCheckpointsNow();
  assert.equal(checkpoints.length, 1, `one checkpoint (the base) is left: ${checkpoints.join(', ')}`);
  await assert.rejects(
    virsh(daemon.uri, ['backup-dumpxml', NAME]),
    /no domain backup job/,
    'no backup job left running',
  );
});

test('every point under a write workload is a prefix of the acknowledged records', async () => {
  for (let i = 1; i <= 3; i++) assertPrefix(await pointUnderLoad(), `point ${i}`);
  assert.equal((await osrCheckpointsNow()).length, 1, 'still one checkpoint after incremental points');
});

test('libvirtd restarts mid-cycle: the cycle or the next one completes, nothing acknowledged is lost', async () => {
  await writeRecords(3);
  const ackedBefore = written;
  const taking = machines.takePoint(bed.ctx, NAME, { kind: 'crash' }).then(
    (p) => p,
    (err: Error) => err,
  );
  // Mid-cycle: while the point's backup job (its NBD export) is up.
  const deadline = Date.now() + 60_000;
  while (
    !(await virsh(daemon.uri, ['backup-dumpxml', NAME]).then(
      () => true,
      () => false,
    ))
  ) {
    assert.ok(Date.now() < deadline, 'the cycle started a backup job');
  }
  await daemon.restart();
  const first = await taking;
  const taken = first instanceof Error ? await machines.takePoint(bed.ctx, NAME, { kind: 'crash' }) : first;
  const point = await pointById(bed.ctx, NAME, taken.id);
  const records = recordsIn(await exportedImage(bed.ctx, point, 'vda')).map((r) => r.record);
  assertPrefix({ ackedBefore, records, writtenAfter: written }, 'after the restart');
  assertPrefix(await pointUnderLoad(), 'the next point');
});

test('the guest reboots: points go on, incremental', async () => {
  await vm.reboot();
  assertPrefix(await pointUnderLoad(), 'after the reboot');
  const status = await machines.machineStatus(bed.ctx, NAME);
  assert.ok(
    !status.alerts.some((a) => a.kind === 'resync-needed'),
    'a reboot keeps change tracking (no resync)',
  );
});

test('the domain is shut off and started again: points go on, tracking kept', async () => {
  await vm.powerCycle();
  assertPrefix(await pointUnderLoad(), 'after the power cycle');
  const alerts = (await machines.machineStatus(bed.ctx, NAME)).alerts;
  assert.ok(
    !alerts.some((a) => a.kind === 'resync-needed'),
    'its bitmaps were saved at shutdown (no resync)',
  );
});

test('a checkpoint lost (deleted by hand): resynchronized by checksums, with an alert', async () => {
  for (const name of (await osrCheckpointsNow()).reverse())
    await virsh(daemon.uri, ['checkpoint-delete', '--', NAME, name]);
  await writeRecords(2);
  const ackedBefore = written;
  const before = await machines.machineStatus(bed.ctx, NAME);
  const taken = await machines.takePoint(bed.ctx, NAME, { kind: 'crash' });
  const image = await exportedImage(bed.ctx, await pointById(bed.ctx, NAME, taken.id), 'vda');
  assertPrefix(
    { ackedBefore, records: recordsIn(image).map((r) => r.record), writtenAfter: written },
    'the resynchronized point',
  );
  assert.ok(sourceImage().equals(image), 'with the guest idle, the point is the source disk');
  // The freeze raised resync-needed (cleared once the resync is published): the history keeps it.
  const history: string[] = [];
  strings(await (await bed.ctx.client()).workflow.getHandle(`protect/${NAME}`).fetchHistory(), history);
  assert.ok(
    history.some((t) => /tracking lost on vda .*resynchronizing by checksums/.test(t)),
    'the freeze alerted the lost tracking',
  );
  const sent = (await machines.machineStatus(bed.ctx, NAME)).stats.bytesChanged - before.stats.bytesChanged;
  assert.ok(
    sent > 0 && sent <= 2 * MiB,
    `the resync sent the differing blocks only (${sent} bytes of an 8 MiB disk)`,
  );
  assert.equal((await osrCheckpointsNow()).length, 1, 'tracking is back: one checkpoint');
  assertPrefix(await pointUnderLoad(), 'the next point');
});

test('the domain crashes (QEMU killed): bitmaps lost, the next cycles resynchronize by checksums', async () => {
  await vm.crash();
  await writeRecords(2);
  const ackedBefore = written;
  let taken;
  for (let attempt = 1; ; attempt++) {
    try {
      taken = await machines.takePoint(bed.ctx, NAME, { kind: 'crash' });
      break;
    } catch (err) {
      // The first backup after the crash is refused by libvirt (missing bitmap): that cycle fails.
      assert.match((err as Error).message, /change bitmaps of libvirt domain lv1 are lost/);
      assert.ok(attempt < 3, `a point after the crash within 3 tries: ${(err as Error).message}`);
    }
  }
  const image = await exportedImage(bed.ctx, await pointById(bed.ctx, NAME, taken.id), 'vda');
  assertPrefix(
    { ackedBefore, records: recordsIn(image).map((r) => r.record), writtenAfter: written },
    'after the crash',
  );
  assert.ok(sourceImage().equals(image), 'with the guest idle, the point is the source disk');
  assertPrefix(await pointUnderLoad(), 'the next point');
});

test('an app-consistent point on a domain without a guest agent: crash-consistent instead, and said why', async () => {
  await writeRecords(1);
  const taken = await machines.takePoint(bed.ctx, NAME, { kind: 'app' });
  assert.equal(taken.kind, 'crash', 'no agent to freeze the filesystems: the point is crash-consistent');
  const history: string[] = [];
  strings(await (await bed.ctx.client()).workflow.getHandle(`protect/${NAME}`).fetchHistory(), history);
  assert.ok(
    history.some((t) =>
      /guest agent of lv1 could not freeze its filesystems .*install and start qemu-guest-agent/.test(t),
    ),
    'the reason (domfsfreeze refused) and the fix are told',
  );
  const image = await exportedImage(bed.ctx, await pointById(bed.ctx, NAME, taken.id), 'vda');
  assert.ok(sourceImage().equals(image), 'the crash-consistent point is the source disk');
});

test('unprotect leaves no checkpoint, bitmap or backup job', async () => {
  await machines.unprotect(bed.ctx, NAME);
  assert.deepEqual(await osrCheckpointsNow(), [], 'virsh checkpoint-list is empty');
  await assert.rejects(virsh(daemon.uri, ['backup-dumpxml', NAME]), /no domain backup job/);
  const info = execFileSync('qemu-img', ['info', '-U', '--output=json', vm.disks[0]!.file], {
    encoding: 'utf8',
  });
  const bitmaps =
    (JSON.parse(info) as { 'format-specific'?: { data?: { bitmaps?: unknown[] } } })['format-specific']?.data
      ?.bitmaps ?? [];
  assert.deepEqual(bitmaps, [], 'no persistent bitmap left in the image');
});
