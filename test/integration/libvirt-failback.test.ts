// Failback of a machine failed over into libvirt, against a real libvirtd (Debian's, a private
// session daemon) running the test guest under TCG: protect a domain, write records, planned
// failover into libvirt and commit, write records inside the recovered domain (through its guest
// agent: the recovered domain's command-line port is not wired to the test), reprotect (a diff
// resync onto the original domain's disk file while the domain is off), stop it (the original
// disk is the last point, no daemon, export or folder left), then the rest as a recovery plan
// (`osr plan reprotect|failback|reenable`, the reverse reads on the recovery host's queue): more
// records (reverse delta cycles), fail back: the original disk equals the recovered domain's disk
// at its stop, byte for byte, with every record; the original domain boots (its agent answers);
// re-enable protects it again and removes the recovered domain; nothing OSR made for the reverse
// direction is left. A running original is refused.
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
import * as plans from '../../operations/plans';
import type { FailbackStatus } from '../../shared/contracts/failback';
import { hostProcessServerQueue } from '../../shared/task-queues';
import { storeHost } from '../../operations/hosts';
import { libvirtDaemonDir, serveOriginalDomain } from '../../activities/master-target/libvirt-targets';
import { bringUp } from '../../activities/master-target/bring-up';
import type { MasterTargetDeps } from '../../activities/master-target/apply-reverse';
import type { ProtectedMachine } from '../../shared/replication-types';
import { parseXml, virsh, type XmlNode } from '../../lib/libvirt/virsh';
import { exportFolderOf } from '../../lib/libvirt/export-folder';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { reverseId, undoId } from '../../shared/failback-types';
import { reprotectWorkflowId } from '../../shared/contracts/reprotect';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { startLibvirtDaemon, type LibvirtDaemon } from '../helpers/libvirt-daemon';
import { startLibvirtTestVm, type LibvirtTestVm } from '../helpers/libvirt-vm';
import { pollFor } from '../helpers/poll';
import { guestExec } from '../helpers/libvirt-guest-exec';
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

/** Sectors apart of the records written in the recovered domain: each in its own 64 KiB block. */
const SPREAD = 256;

/** Writes record n at sector n × SPREAD of the recovered domain's vda, acknowledged when it returns. */
const writeRecordIn = (domain: string, n: number) =>
  guestExec(
    daemon.uri,
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

/** Runs a plan stage of the test's plan; its machine's child job (id and end status). */
async function planChild(stage: 'failback' | 'reenable') {
  const plan = await failback.planStage(bed.ctx, 'lvp', stage);
  assert.equal(plan.status?.state, 'done', plan.status?.error);
  const workflowId = plan.status?.groups[0]?.machines[0]?.workflowId ?? '';
  const client = await bed.ctx.client();
  return { workflowId, status: (await client.workflow.getHandle(workflowId).result()) as FailbackStatus };
}

/** The task queues each activity type of a workflow was scheduled on (from its history). */
async function activityQueues(workflowId: string): Promise<Record<string, string[]>> {
  const history = await (await bed.ctx.client()).workflow.getHandle(workflowId).fetchHistory();
  const queues: Record<string, string[]> = {};
  for (const e of history.events ?? []) {
    const a = e.activityTaskScheduledEventAttributes;
    if (!a) continue;
    const list = (queues[a.activityType?.name ?? '?'] ??= []);
    if (!list.includes(a.taskQueue?.name ?? '?')) list.push(a.taskQueue?.name ?? '?');
  }
  return queues;
}

const recordNumbers = (image: Buffer) => recordsIn(image).map((r) => r.record);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Bytes of the 64 KiB blocks in which two images differ. */
function differing(a: Buffer, b: Buffer): number {
  let blocks = 0;
  for (let off = 0; off < a.length; off += 65536)
    if (!a.subarray(off, off + 65536).equals(b.subarray(off, off + 65536))) blocks++;
  return blocks * 65536;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const checkpointsOf = async (domain: string) =>
  (await virsh(daemon.uri, ['checkpoint-list', '--name', '--', domain])).split('\n').filter((l) => l.trim());

/** The master target's folder of the machine (its storage daemon's sockets in `lv/`). */
const mtDir = () => path.join(bed.stack.stateDir, 'failback', NAME);

/**
 * What OSR made for the reverse direction and left: the master target's folder, the recovery
 * host's process-server work folder and backup export folder, storage daemons of this stack,
 * reverse data and undo journals in osr-cache. Counted on the machine itself, not from OSR's log.
 */
async function leftovers(recovered: string): Promise<string[]> {
  const left: string[] = [];
  const reverseSource = { type: 'libvirt' as const, host: 'drhost', uri: daemon.uri, domain: recovered };
  for (const dir of [
    mtDir(),
    path.join(bed.stack.stateDir, 'machines', reverseId(NAME)),
    exportFolderOf(reverseSource).dir,
  ])
    if (fs.existsSync(dir)) left.push(`${dir}: [${fs.readdirSync(dir).join(', ')}]`);
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    if (/qemu-storage-daemon$/.test(argv[0] ?? '') && argv.some((a) => a.includes(bed.stack.stateDir)))
      left.push(`process ${pid}: ${argv.join(' ')}`);
  }
  const cache = bed.ctx.blobService.getContainerClient(CONTAINERS.cache);
  for (const prefix of [`${reverseId(NAME)}/`, `${undoId(NAME)}/`])
    for await (const b of cache.listBlobsFlat({ prefix })) left.push(`blob ${b.name}`);
  return left;
}

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

  // B: records written inside the recovered domain, then a diff resync; no delta cycle follows
  // (an hour apart), so what the original disk holds at the stop is known exactly.
  for (let n = 6; n <= 10; n++) await writeRecordIn(recovered, n);
  const originalFile = vm.disks[0]!.file;
  const recoveredFile = await diskFileOf(recovered);
  const originalXml = await virsh(daemon.uri, ['dumpxml', '--inactive', '--', NAME]);
  const diffB = differing(rawOf(recoveredFile), rawOf(originalFile));
  assert.equal(diffB, 5 * 65536, 'the five records differ, one 64 KiB block each');
  const first = await failback.startReprotect(bed.ctx, NAME, { intervalSeconds: 3600 });
  const tResynced = Date.now();
  assert.equal(first.status?.state, 'protected');
  const resync = first.status?.disks[0];
  assert.equal(resync?.diskId, 'vda');
  assert.equal(resync?.resyncMode, 'resync', "the original domain's disk is there: a diff resync");
  assert.equal(resync?.resyncRawBytes, diffB, 'the resync covers exactly the differing blocks');
  assert.equal(await stateOf(NAME), 'shut off', 'the original domain is off while its disk is written');
  const atPoint = rawOf(recoveredFile); // nothing written since the resync's freeze
  const mtPid = Number(fs.readFileSync(path.join(mtDir(), 'lv', 'qsd.pid'), 'utf8'));
  assert.ok(alive(mtPid), "the master target's storage daemon serves the original disk");
  assert.ok((await checkpointsOf(recovered)).length > 0, 'reprotect tracks the recovered domain');

  // reprotect-stop: records 11 and 12 never reach the original, which goes back to the last point.
  for (let n = 11; n <= 12; n++) await writeRecordIn(recovered, n);
  const stopped = await failback.stopReprotect(bed.ctx, NAME);
  assert.equal(stopped.state, 'stopped');
  const afterStop = rawOf(originalFile);
  assert.equal(afterStop.length, 8 * MiB);
  assert.ok(afterStop.equals(atPoint.subarray(0, afterStop.length)), 'the original disk is the last point');
  assert.deepEqual(recordNumbers(afterStop), range(1, 10));
  assert.equal(await stateOf(NAME), 'shut off', 'the original domain stays off');
  assert.equal(await virsh(daemon.uri, ['dumpxml', '--inactive', '--', NAME]), originalXml);
  // Bootable: a consistent image that no process holds (qemu-img check takes the image's lock).
  execFileSync('qemu-img', ['check', '-q', originalFile]);
  assert.equal(await stateOf(recovered), 'running', 'the recovered domain runs on');
  assert.deepEqual(recordNumbers(rawOf(recoveredFile)), range(1, 12), 'with its writes');
  assert.deepEqual(await checkpointsOf(recovered), [], 'and without the reverse checkpoint');
  assert.equal(alive(mtPid), false, "the master target's storage daemon is gone");
  assert.deepEqual(await leftovers(recovered), [], 'nothing of the reverse direction is left');
  const client = await bed.ctx.client();
  await assertReplays(client.workflow.getHandle(reprotectWorkflowId(NAME)), 'reprotect-libvirt-stop');

  // C: the rest as a recovery plan (`osr plan reprotect|failback|reenable`): a diff resync of
  // records 11 and 12, reverse delta cycles carry 13 and 14, the final cycle 15.
  await plans.createPlan(bed.ctx, { name: 'lvp', groups: [{ machines: [NAME] }] });
  await assert.rejects(
    failback.planStage(bed.ctx, 'lvp', 'failback'),
    /cannot failback; nothing was started:\n {2}lvf: .*reprotect it first/,
  );
  const diffC = differing(rawOf(recoveredFile), rawOf(originalFile));
  assert.equal(diffC, 2 * 65536);
  const rpPlan = await failback.planStage(bed.ctx, 'lvp', 'reprotect', { intervalSeconds: 2 });
  assert.equal(rpPlan.status?.state, 'done', rpPlan.status?.error);
  const rp = await failback.reprotectStatus(bed.ctx, NAME);
  assert.equal(rp.state, 'protected');
  assert.equal(rp.disks[0]?.resyncRawBytes, diffC, 'again only the differing blocks');
  for (let n = 13; n <= 14; n++) await writeRecordIn(recovered, n);
  const cycles = (await failback.reprotectStatus(bed.ctx, NAME)).cycles;
  await pollFor(
    async () => ((await failback.reprotectStatus(bed.ctx, NAME)).cycles > cycles ? true : undefined),
    { timeoutMs: 120_000, intervalMs: 500, failure: () => new Error('no reverse delta cycle') },
  );
  await writeRecordIn(recovered, 15);

  const fb = await planChild('failback');
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
  assert.deepEqual(recordNumbers(original), range(1, 15), 'every acknowledged record, from both sites');
  assert.match(
    fb.status?.steps.find((s) => s.name === 'remove recovery-site leftovers')?.detail ?? '',
    /^removed .*lvf\.reverse/,
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

  const re = await planChild('reenable');
  assert.equal(re.status?.state, 'done', re.status?.error);
  assert.ok(re.status?.reenable, 're-enable waited for the first point');
  const status = await waitForStatus(bed.ctx, NAME, (st) => st.state === 'protected' && !!st.lastPoint);
  const point = await pointById(bed.ctx, NAME, status.lastPoint!.id);
  const image = await exportedImage(bed.ctx, point, 'vda');
  assert.deepEqual(recordNumbers(image).slice(0, 15), range(1, 15));
  const domains = (await virsh(daemon.uri, ['list', '--all', '--name'])).split('\n').map((l) => l.trim());
  assert.ok(!domains.includes(recovered), 're-enable removed the recovered domain');
  assert.ok(domains.includes(NAME));
  assert.deepEqual(await leftovers(recovered), [], 'nothing OSR made for failback is left');
  assert.ok(
    !fs.existsSync(path.join(bed.stack.stateDir, 'recovered')) ||
      !fs.readdirSync(path.join(bed.stack.stateDir, 'recovered')).some((f) => f.startsWith(`${NAME}-`)),
    'the recovered images are gone',
  );
  assert.ok(
    (await checkpointsOf(NAME)).every((c) => !c.includes('.reverse')),
    'the original domain carries only forward checkpoints',
  );
  const tReenabled = Date.now();
  process.stdout.write(
    `libvirt failback: ${JSON.stringify({
      differingBytes: diffB,
      resync,
      secondResyncBytes: diffC,
      seconds: {
        protectAndFailover: (tFailedOver - t0) / 1000,
        reprotectResync: (tResynced - tFailedOver) / 1000,
        failback: (tFailedBack - tResynced) / 1000,
        originalBoot: (tBooted - tFailedBack) / 1000,
        reenable: (tReenabled - tBooted) / 1000,
      },
    })}\n`,
  );

  // The recovery host's process servers read the recovered domain, the plan's children too.
  const drQueue = hostProcessServerQueue('drhost');
  for (const [id, kinds] of [
    [
      reprotectWorkflowId(NAME),
      ['discoverDisks', 'enableTracking', 'freezePoint', 'transferDisk', 'releasePoint'],
    ],
    [fb.workflowId, ['stopSourceWrites', 'forgetReverseSource']],
  ] as const)
    for (const kind of kinds) assert.deepEqual((await activityQueues(id))[kind], [drQueue], `${id}: ${kind}`);
  // The stop and the leftovers' removal are new paths: recorded beside the older histories.
  await assertReplays(client.workflow.getHandle(reprotectWorkflowId(NAME)));
  await assertReplays(client.workflow.getHandle(fb.workflowId), 'failback-libvirt-cleanup');
  await assertReplays(client.workflow.getHandle(re.workflowId));
});

test('a running original domain is refused with the fix, and nothing is started; a retried bring-up finds it started', async () => {
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
    // A bring-up retried after it started the domain (its daemon gone) is done, not an error.
    const target = {
      qmpSocket: path.join(libvirtDaemonDir(dir), 'qmp.sock'),
      nbdSocket: path.join(libvirtDaemonDir(dir), 'nbd.sock'),
      disks: [],
      libvirt: { uri: daemon.uri, domain: NAME, daemonDir: libvirtDaemonDir(dir) },
    };
    const retried = await bringUp({} as MasterTargetDeps, {
      machine: { name: NAME } as ProtectedMachine,
      target,
    });
    assert.equal(retried.method, 'virsh-start');
    assert.match(retried.note, /started by an earlier attempt/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
