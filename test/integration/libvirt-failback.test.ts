// Failback of a machine failed over into libvirt, against a real libvirtd (Debian's, a private
// session daemon) running the test guest under TCG: protect a domain, write records, planned
// failover into libvirt and commit, write records inside the recovered domain (through its guest
// agent: the recovered domain's command-line port is not wired to the test), reprotect (a diff
// resync onto the original domain's disk file while the domain is off), more records (reverse
// delta cycles), fail back: the original disk equals the recovered domain's disk at its stop,
// byte for byte, with every record; the original domain boots (its agent answers); re-enable
// protects it again and removes the recovered domain. A running original is refused.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as failback from '../../operations/failback';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { storeHost } from '../../operations/hosts';
import { libvirtDaemonDir, serveOriginalDomain } from '../../activities/master-target/libvirt-targets';
import { parseXml, virsh, type XmlNode } from '../../lib/libvirt/virsh';
import { reprotectWorkflowId } from '../../shared/contracts/reprotect';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { startLibvirtDaemon, type LibvirtDaemon } from '../helpers/libvirt-daemon';
import { startLibvirtTestVm, type LibvirtTestVm } from '../helpers/libvirt-vm';
import { pollFor } from '../helpers/poll';
import { assertReplays } from '../helpers/replay';
import { formatRecord, recordsIn, SECTOR } from '../helpers/test-vm';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const NAME = 'lvf';
let bed: Testbed;
let daemon: LibvirtDaemon;
let vm: LibvirtTestVm;

before(async () => {
  daemon = await startLibvirtDaemon();
  bed = await startTestbed({
    processServerEnv: async (stack) => {
      // The session daemon's QEMU (user nobody) opens the images the applier makes under the state folder.
      fs.chmodSync(stack.stateDir, 0o755);
      const ctx = new ControlContext(stack.config);
      // The primary host, and the recovery host: the same libvirtd here, added under a second name.
      for (const name of ['lvhost', 'drhost'])
        await storeHost(ctx, {
          name,
          site: stack.config.site,
          connection: { kind: 'libvirt', uri: daemon.uri },
        });
      await ctx.close();
      // Each libvirt host's machines are read by its own process servers, the recovered domain too.
      return { OSR_PROCESS_SERVER_HOSTS: 'lvhost,drhost' };
    },
  });
  await bed.stack.startWorker('master-target');
  vm = await startLibvirtTestVm(daemon, { name: NAME, disks: [{ sizeBytes: 8 * MiB }], guestAgent: true });
  for (let n = 1; n <= 5; n++) await vm.writeRecord(0, n);
});

after(async () => {
  await vm?.remove().catch(() => undefined);
  await daemon?.stop();
  await bed?.stop();
});

const stateOf = async (domain: string) => (await virsh(daemon.uri, ['domstate', '--', domain])).trim();

/** Runs a shell command inside a domain through its guest agent (guest-exec); its exit code. */
async function guestExec(domain: string, command: string): Promise<number> {
  const agent = async (execute: string, args: object) =>
    (
      JSON.parse(
        await virsh(daemon.uri, [
          'qemu-agent-command',
          '--timeout',
          '10',
          '--',
          domain,
          JSON.stringify({ execute, arguments: args }),
        ]),
      ) as { return: { pid?: number; exited?: boolean; exitcode?: number; 'err-data'?: string } }
    ).return;
  const { pid } = await agent('guest-exec', {
    path: '/bin/sh',
    arg: ['-c', command],
    'capture-output': true,
  });
  const done = await pollFor(
    async () => {
      const s = await agent('guest-exec-status', { pid });
      return s.exited ? s : undefined;
    },
    {
      timeoutMs: 60_000,
      intervalMs: 200,
      failure: (last) => new Error(`guest-exec ${command}: ${String(last)}`),
    },
  );
  if (done.exitcode !== 0)
    throw new Error(
      `${command}: exit ${done.exitcode}: ${Buffer.from(done['err-data'] ?? '', 'base64').toString()}`,
    );
  return done.exitcode;
}

/** Sectors apart of the records written in the recovered domain: each in its own 64 KiB block. */
const SPREAD = 256;

/** Writes record n at sector n × SPREAD of the recovered domain's vda, acknowledged when it returns. */
const writeRecordIn = (domain: string, n: number) =>
  guestExec(
    domain,
    `printf '%s\\n' '${formatRecord(n)}' | dd of=/dev/vda bs=${SECTOR} seek=${n * SPREAD} count=1 iflag=fullblock oflag=direct conv=fsync,notrunc`,
  );

/** A domain's first disk image, as raw bytes (read beside a running guest). */
function rawOf(file: string): Buffer {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-lvf-'));
  try {
    execFileSync('qemu-img', ['convert', '-U', '-O', 'raw', file, path.join(tmp, 'd.raw')]);
    return fs.readFileSync(path.join(tmp, 'd.raw'));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function diskFileOf(domain: string): Promise<string> {
  const xml = await virsh(daemon.uri, ['dumpxml', '--inactive', '--', domain]);
  const disks = ((parseXml(xml).domain as XmlNode).devices as XmlNode).disk as XmlNode | XmlNode[];
  const first = (Array.isArray(disks) ? disks[0] : disks) as XmlNode;
  return String((first.source as XmlNode)['@file']);
}

const recordNumbers = (image: Buffer) => recordsIn(image).map((r) => r.record);

test('a machine failed over into libvirt is reprotected, failed back and re-enabled with every write', async () => {
  const t0 = Date.now();
  await machines.protect(bed.ctx, { name: NAME, host: 'lvhost', domain: NAME, policy: 'manual' });
  await waitForStatus(bed.ctx, NAME, (s) => s.state === 'protected');
  await failover.configureRecovery(bed.ctx, NAME, { target: 'libvirt', libvirt: { recoveryHost: 'drhost' } });
  const fo = await failover.startFailover(bed.ctx, NAME, { planned: true });
  assert.equal(fo.status?.state, 'failed-over', fo.status?.error);
  assert.equal(fo.status?.libvirt?.probe?.ok, true, JSON.stringify(fo.status?.libvirt?.probe));
  const recovered = fo.status!.libvirt!.domain;
  assert.equal(await stateOf(NAME), 'paused', 'the planned failover stopped the original domain');
  assert.equal((await failover.commitFailover(bed.ctx, NAME)).state, 'committed');
  const tFailedOver = Date.now();

  // B: records written inside the recovered domain, then the diff resync.
  for (let n = 6; n <= 10; n++) await writeRecordIn(recovered, n);
  const originalFile = vm.disks[0]!.file;
  const recoveredFile = await diskFileOf(recovered);
  const differing = (a: Buffer, b: Buffer) => {
    let blocks = 0;
    for (let off = 0; off < a.length; off += 65536)
      if (!a.subarray(off, off + 65536).equals(b.subarray(off, off + 65536))) blocks++;
    return blocks * 65536;
  };
  const diffB = differing(rawOf(recoveredFile), rawOf(originalFile));
  assert.equal(diffB, 5 * 65536, 'the five records differ, one 64 KiB block each');
  const rp = await failback.startReprotect(bed.ctx, NAME, { intervalSeconds: 2 });
  const tResynced = Date.now();
  assert.equal(rp.status?.state, 'protected');
  const resync = rp.status?.disks[0];
  assert.equal(resync?.diskId, 'vda');
  assert.equal(resync?.resyncMode, 'resync', "the original domain's disk is there: a diff resync");
  assert.equal(resync?.resyncRawBytes, diffB, 'the resync covers exactly the differing blocks');
  assert.equal(await stateOf(NAME), 'shut off', 'the original domain is off while its disk is written');

  // C: more records; reverse delta cycles carry them, the final cycle the last ones.
  for (let n = 11; n <= 12; n++) await writeRecordIn(recovered, n);
  const cycles = (await failback.reprotectStatus(bed.ctx, NAME)).cycles;
  await pollFor(
    async () => ((await failback.reprotectStatus(bed.ctx, NAME)).cycles > cycles ? true : undefined),
    { timeoutMs: 120_000, intervalMs: 500, failure: () => new Error('no reverse delta cycle') },
  );
  await writeRecordIn(recovered, 13);

  const fb = await failback.startFailback(bed.ctx, NAME);
  const tFailedBack = Date.now();
  assert.equal(fb.status?.state, 'done', fb.status?.error);
  assert.match(fb.status?.steps.find((s) => s.name === 'stop recovery-site writes')?.detail ?? '', /suspend/);
  assert.match(fb.status?.steps.find((s) => s.name === 'bring up original')?.detail ?? '', /^virsh-start/);
  assert.equal(await stateOf(recovered), 'shut off', 'the recovered domain is stopped, kept until re-enable');
  // The recovered disk as it was at its stop (its domain is off now) and the original disk.
  const atStop = rawOf(recoveredFile);
  const original = rawOf(originalFile);
  assert.equal(original.length, 8 * MiB);
  assert.ok(
    original.equals(atStop.subarray(0, original.length)),
    'the original disk is the recovered disk at its stop',
  );
  assert.deepEqual(
    recordNumbers(original),
    Array.from({ length: 13 }, (_, i) => i + 1),
    'every acknowledged record, from both sites',
  );
  const probe = await pollFor(
    async () => {
      const out = await virsh(daemon.uri, [
        'qemu-agent-command',
        '--timeout',
        '5',
        '--',
        NAME,
        '{"execute":"guest-ping"}',
      ]);
      return JSON.parse(out) as unknown;
    },
    {
      timeoutMs: 180_000,
      intervalMs: 1000,
      failure: (last) => new Error(`the original never answered: ${String(last)}`),
    },
  );
  assert.deepEqual(probe, { return: {} }, 'the original domain booted: its guest agent answers');
  const tBooted = Date.now();

  const re = await failback.startReenable(bed.ctx, NAME);
  assert.equal(re.status?.state, 'done', re.status?.error);
  assert.ok(re.status?.reenable, 're-enable waited for the first point');
  const status = await waitForStatus(bed.ctx, NAME, (st) => st.state === 'protected' && !!st.lastPoint);
  const point = await pointById(bed.ctx, NAME, status.lastPoint!.id);
  const image = await exportedImage(bed.ctx, point, 'vda');
  assert.deepEqual(
    recordNumbers(image).slice(0, 13),
    Array.from({ length: 13 }, (_, i) => i + 1),
  );
  const domains = (await virsh(daemon.uri, ['list', '--all', '--name'])).split('\n').map((l) => l.trim());
  assert.ok(!domains.includes(recovered), 're-enable removed the recovered domain');
  assert.ok(domains.includes(NAME));
  const tReenabled = Date.now();
  process.stdout.write(
    `libvirt failback: ${JSON.stringify({
      differingBytes: diffB,
      resync,
      seconds: {
        protectAndFailover: (tFailedOver - t0) / 1000,
        reprotectResync: (tResynced - tFailedOver) / 1000,
        failback: (tFailedBack - tResynced) / 1000,
        originalBoot: (tBooted - tFailedBack) / 1000,
        reenable: (tReenabled - tBooted) / 1000,
      },
    })}\n`,
  );

  const client = await bed.ctx.client();
  await assertReplays(client.workflow.getHandle(reprotectWorkflowId(NAME)), 'reprotect-libvirt');
  await assertReplays(client.workflow.getHandle(fb.workflowId), 'failback-libvirt');
  await assertReplays(client.workflow.getHandle(re.workflowId), 'reenable-libvirt');
});

test('a running original domain is refused with the fix, and nothing is started', async () => {
  // After the round trip the original runs again: the master target must not take its disks.
  assert.equal(await stateOf(NAME), 'running');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-lvf-mt-'));
  try {
    await assert.rejects(
      serveOriginalDomain(dir, NAME, { type: 'libvirt', host: 'lvhost', uri: daemon.uri, domain: NAME }, [
        { diskId: 'vda', sizeBytes: 8 * MiB },
      ]),
      /the original domain lvf of lvf runs .*Shut it down \(`virsh -c .* shutdown lvf`\) and reprotect again/,
    );
    assert.equal(await stateOf(NAME), 'running', 'the domain runs on');
    assert.equal(fs.existsSync(path.join(libvirtDaemonDir(dir), 'qsd.pid')), false, 'no daemon was started');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
