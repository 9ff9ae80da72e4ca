// App-consistent points of a libvirt domain through libvirt's own guest-agent freeze: the test
// guest, defined in a private libvirtd (test/helpers/libvirt-daemon.ts) with the agent's channel
// (org.qemu.guest_agent.0), runs Debian's qemu-ga and has an ext4 filesystem mounted on its qcow2
// disk. OSR never opens the agent itself: libvirt is its only client (`domfsfreeze` around the
// point's `backup-begin`, then `domfsthaw`). What shows the freeze happened is the guest's side:
// the agent's fsfreeze hook logged freeze then thaw, and the point is a filesystem frozen clean
// (ext4 clears needs_recovery when frozen) holding a file written just before without any sync.
// A process server killed while the guest is frozen leaves it frozen only until the connector's
// next call for that domain, which thaws it first.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import { storeHost } from '../../operations/hosts';
import * as machines from '../../operations/machines';
import { libvirtSource } from '../../lib/libvirt/libvirt-source';
import { virsh } from '../../lib/libvirt/virsh';
import type { ProtectedMachine } from '../../shared/replication-types';
import { giveToDaemon, startLibvirtDaemon, type LibvirtDaemon } from '../helpers/libvirt-daemon';
import { startLibvirtTestVm, type LibvirtTestVm } from '../helpers/libvirt-vm';
import { inspectExt4 } from '../helpers/ext4-image';
import { pollFor } from '../helpers/poll';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { startTestbed, type Testbed } from '../helpers/testbed';
import { startVirshGate } from '../helpers/virsh-gate';

const MiB = 1024 * 1024;
const NAME = 'lvga';
/** ext4's primary superblock: the bytes a thaw rewrites (it sets needs_recovery again). */
const SUPERBLOCK = { start: 1024, end: 2048 };
let bed: Testbed;
let daemon: LibvirtDaemon;
let vm: LibvirtTestVm;
let scratch: string;

before(async () => {
  daemon = await startLibvirtDaemon();
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
  scratch = fs.mkdtempSync(path.join(bed.stack.stateDir, 'lvga-'));
  // An ext4 filesystem (with its journal) made on the host; no lazy initialization, so the
  // guest's kernel writes nothing to it in the background.
  const image = path.join(scratch, 'fs.raw');
  fs.writeFileSync(image, Buffer.alloc(0));
  fs.truncateSync(image, 32 * MiB);
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image]);
  giveToDaemon(image);
  vm = await startLibvirtTestVm(daemon, {
    name: NAME,
    disks: [{ sizeBytes: 32 * MiB, image }],
    guestAgent: true,
  });
  const mounted = await vm.run('mkdir -p /mnt && mount -t ext4 -o noatime /dev/vda /mnt && echo mounted');
  assert.equal(mounted.code, 0, mounted.output);
  // The agent starts after the guest is up: wait until it answers libvirt.
  await pollFor(async () => ((await vm.agent('guest-ping')) !== undefined ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 250,
    failure: (e) => new Error(`the guest agent never answered libvirt: ${String(e)}`),
  });
});

after(async () => {
  await vm?.remove().catch(() => undefined);
  await daemon?.stop();
  await bed?.stop();
});

/** The source disk as it is now (read beside the running domain). */
function sourceImage(): Buffer {
  const raw = path.join(scratch, 'source.raw');
  execFileSync('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', vm.disks[0]!.file, raw]);
  try {
    return fs.readFileSync(raw);
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

/** Byte ranges where two equal-sized images differ, as [start, end) pairs. */
function differences(a: Buffer, b: Buffer): Array<[number, number]> {
  assert.equal(a.length, b.length, 'images of one size');
  const out: Array<[number, number]> = [];
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const last = out.at(-1);
    if (last && last[1] === i) last[1] = i + 1;
    else out.push([i, i + 1]);
  }
  return out;
}

test('an app-consistent point of a libvirt domain goes through libvirt’s guest-agent freeze', async () => {
  const { ctx } = bed;
  await machines.protect(ctx, { name: NAME, host: 'lvhost', domain: NAME, policy: 'manual' });
  await waitForStatus(ctx, NAME, (s) => s.state === 'protected');
  const cleared = await vm.run('rm -f /run/fsfreeze.log');
  assert.equal(cleared.code, 0, cleared.output);

  // Written into the guest's page cache only: no sync, no O_DIRECT.
  const text = `libvirt app-consistent ${randomBytes(8).toString('hex')}`;
  const wrote = await vm.run(`echo '${text}' > /mnt/app.txt`);
  assert.equal(wrote.code, 0, wrote.output);

  const brief = await machines.takePoint(ctx, NAME, { kind: 'app', tag: 'libvirt-qemu-ga' });
  assert.equal(brief.kind, 'app', 'recorded as app-consistent');
  const point = await pointById(ctx, NAME, brief.id);
  assert.equal(point.kind, 'app', 'the catalog says app-consistent');
  assert.equal(point.tag, 'libvirt-qemu-ga');
  const status = await machines.machineStatus(ctx, NAME);
  assert.ok(
    !status.alerts.some((a) => a.kind === 'quiesce-failed'),
    `no quiesce failure: ${JSON.stringify(status.alerts)}`,
  );

  // The guest's side: its agent ran the fsfreeze hook for one freeze and then one thaw.
  const log = await vm.run('cat /run/fsfreeze.log');
  assert.equal(log.code, 0, `the guest has an fsfreeze log: ${log.output}`);
  assert.deepEqual(
    log.output
      .trim()
      .split('\n')
      .map((l) => l.split(' ')[0]),
    ['freeze', 'thaw'],
    `the guest froze then thawed once: ${log.output}`,
  );
  // Thawed again: the agent says so, and the filesystem takes writes (read below).
  assert.equal(await vm.agent('guest-fsfreeze-status'), 'thawed');

  // The point's image: a filesystem frozen clean, with the unsynced file in it.
  const pointImage = await exportedImage(ctx, point, 'vda');
  const pointFile = path.join(scratch, 'point.raw');
  fs.writeFileSync(pointFile, pointImage);
  const { features, content } = inspectExt4(pointFile, '/app.txt');
  assert.match(features, /has_journal/, `an ext4 with a journal: ${features}`);
  assert.doesNotMatch(features, /needs_recovery/, `frozen: no journal to replay in the point (${features})`);
  assert.equal(content.trim(), text, 'the file written just before the point is in it');
  execFileSync('e2fsck', ['-fn', pointFile], { stdio: 'ignore' }); // exit 0: clean

  // The point is the disk: the guest wrote nothing since but the thaw's superblock update.
  const diffs = differences(pointImage, sourceImage());
  console.log(`# point vs source after the thaw: differing byte ranges ${JSON.stringify(diffs)}`);
  assert.ok(
    diffs.every(([s, e]) => s >= SUPERBLOCK.start && e <= SUPERBLOCK.end),
    `the point equals the source disk outside ext4's superblock: differences at ${JSON.stringify(diffs.slice(0, 5))}`,
  );

  // Writes go on after the thaw, and reach the disk.
  const more = await vm.run('echo more >> /mnt/app.txt && sync && echo synced');
  assert.equal(more.code, 0, more.output);
  const later = path.join(scratch, 'later.raw');
  fs.writeFileSync(later, sourceImage());
  assert.equal(
    inspectExt4(later, '/app.txt').content,
    `${text}\nmore\n`,
    'the write after the thaw is on the disk',
  );
});

test('crash-consistent points of the same domain do not freeze the guest', async () => {
  const { ctx } = bed;
  await vm.run('rm -f /run/fsfreeze.log');
  const brief = await machines.takePoint(ctx, NAME, { kind: 'crash' });
  assert.equal(brief.kind, 'crash');
  const log = await vm.run('cat /run/fsfreeze.log 2>/dev/null; echo end');
  assert.equal(log.output.trim(), 'end', `no freeze for a crash-consistent point: ${log.output}`);
});

test('unprotect leaves no checkpoint and the guest thawed', async () => {
  await machines.unprotect(bed.ctx, NAME);
  assert.equal((await virsh(daemon.uri, ['checkpoint-list', '--name', '--', NAME])).trim(), '');
  assert.equal(await vm.agent('guest-fsfreeze-status'), 'thawed');
});

test('a process server killed while the guest is frozen: the next call thaws it first', async () => {
  const gate = startVirshGate();
  const workDir = path.join(scratch, 'connector');
  const machine = {
    name: NAME,
    site: 'test',
    source: { type: 'libvirt', host: 'lvhost', uri: daemon.uri, domain: NAME },
    policy: 'manual',
    createdAt: new Date().toISOString(),
  } satisfies ProtectedMachine;
  await vm.run('rm -f /run/fsfreeze.log');
  let frozenNow!: () => void;
  const reachedBackup = new Promise<void>((r) => (frozenNow = r));
  let letGo!: (outcome: 'fail') => void;
  const released = new Promise<'fail'>((r) => (letGo = r));
  gate.hold(NAME, () => {
    frozenNow();
    return released;
  });
  // A process server's freeze of an app-consistent point, killed (-9) at its backup-begin: after
  // domfsfreeze, before domfsthaw.
  const connector = path.join(__dirname, '..', '..', 'lib', 'libvirt', 'libvirt-source.js');
  const child = spawn(
    process.execPath,
    [
      '-e',
      `require(${JSON.stringify(connector)}).libvirtSource.connect(${JSON.stringify(machine)}, { workDir: ${JSON.stringify(workDir)} })` +
        ".then((c) => c.freeze(['vda'], 'lvga-k1', { quiesce: true }))",
    ],
    { env: { ...process.env, PATH: `${gate.bin}:${process.env.PATH ?? ''}` }, stdio: 'ignore' },
  );
  const exited = new Promise((r) => child.once('exit', r));
  try {
    await Promise.race([
      reachedBackup,
      exited.then(() => Promise.reject(new Error('the freeze ended before its backup-begin'))),
    ]);
    assert.equal(await vm.agent('guest-fsfreeze-status'), 'frozen', 'frozen by the freeze in progress');
    child.kill('SIGKILL');
    await exited;
    letGo('fail'); // the held virsh call ends without reaching libvirt
    assert.equal(await vm.agent('guest-fsfreeze-status'), 'frozen', 'nobody thawed it: its process is gone');

    // The activity's retry: a new session for the same point thaws the guest, then takes it.
    const session = await libvirtSource.connect(machine, { workDir });
    try {
      const view = await session.freeze(['vda'], 'lvga-k1', { quiesce: true });
      assert.equal(view.pitId, 'lvga-k1');
      assert.equal(await vm.agent('guest-fsfreeze-status'), 'thawed');
      const log = await vm.run('cat /run/fsfreeze.log');
      assert.deepEqual(
        log.output
          .trim()
          .split('\n')
          .map((l) => l.split(' ')[0]),
        ['freeze', 'thaw', 'freeze', 'thaw'],
        `the killed freeze was thawed before the point was frozen again: ${log.output}`,
      );
      await session.release('lvga-k1', { success: false });
      await session.disableTracking();
    } finally {
      await session.close();
    }
    const wrote = await vm.run('echo after >> /mnt/app.txt && sync && echo ok');
    assert.equal(wrote.code, 0, `the guest takes writes again: ${wrote.output}`);
    assert.equal((await virsh(daemon.uri, ['checkpoint-list', '--name', '--', NAME])).trim(), '');
  } finally {
    child.kill('SIGKILL');
    gate.close();
  }
});
