// Recovery into libvirt against a real libvirtd (Debian's, a private session daemon) running the
// test guest under TCG: protect keeps the domain's own definition in the vault; a drill defines a
// domain from it on the recovery host and the probe hears the guest's agent; a second drill beside
// it; cleaning one leaves the other; cleaning both leaves `virsh list --all` as before; a failover,
// committed, leaves the recovered domain running. Bad recovery hosts are refused with the fix.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { OperationError } from '../../operations/context';
import { storeHost } from '../../operations/hosts';
import { parseXml, virsh, virshWithXml, type XmlNode } from '../../lib/libvirt/virsh';
import { drillNetworkXml, type OsrTag } from '../../lib/libvirt/recovered-domain';
import { ensureNetwork, removeTagged } from '../../lib/libvirt/recovery-host';
import { keptDomainDoc, type KeptDomain } from '../../shared/libvirt-target';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { startLibvirtDaemon, type LibvirtDaemon } from '../helpers/libvirt-daemon';
import { startLibvirtTestVm, type LibvirtTestVm } from '../helpers/libvirt-vm';
import { assertReplays } from '../helpers/replay';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const NAME = 'lvt';
let bed: Testbed;
let daemon: LibvirtDaemon;
let vm: LibvirtTestVm;
let domainsBefore: string[];

before(async () => {
  // With CAP_NET_ADMIN: a drill's isolated network is a real bridge.
  daemon = await startLibvirtDaemon({ netAdmin: true });
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
      await storeHost(ctx, {
        name: 'sockhost',
        site: stack.config.site,
        connection: { kind: 'sockets', dir: '/run/qemu' },
      });
      await ctx.close();
      return { OSR_PROCESS_SERVER_HOSTS: 'lvhost' };
    },
  });
  vm = await startLibvirtTestVm(daemon, { name: NAME, disks: [{ sizeBytes: 8 * MiB }], guestAgent: true });
  for (let n = 1; n <= 5; n++) await vm.writeRecord(0, n);
});

after(async () => {
  await vm?.remove().catch(() => undefined);
  await daemon?.stop();
  await bed?.stop();
});

const names = async (args: string[]) =>
  (await virsh(daemon.uri, args))
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .sort();

/** What the test itself hears from a domain's guest agent (not OSR's probe). */
async function guestPing(domain: string): Promise<unknown> {
  return JSON.parse(
    await virsh(daemon.uri, [
      'qemu-agent-command',
      '--timeout',
      '10',
      '--',
      domain,
      '{"execute":"guest-ping"}',
    ]),
  );
}

/** A running domain's disk vda as a raw image (read beside the running guest). */
function imageOf(file: string): Buffer {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-lvt-'));
  try {
    execFileSync('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', file, path.join(tmp, 'd.raw')]);
    return fs.readFileSync(path.join(tmp, 'd.raw'));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function diskSourceOf(domain: string, xml: string): string {
  const disks = ((parseXml(xml).domain as XmlNode).devices as XmlNode).disk as XmlNode[];
  const source = (disks[0]?.source as XmlNode | undefined)?.['@file'];
  if (typeof source !== 'string') throw new Error(`domain ${domain} has no file disk`);
  return source;
}

async function assertRecoveredDomain(status: RecoveryStatus, pointImage: Buffer): Promise<string> {
  const l = status.libvirt;
  assert.ok(l, 'the status names the libvirt domain');
  assert.equal(l.host, 'drhost');
  assert.equal(l.hears, 'guest-agent');
  assert.equal(l.probe?.ok, true, `the boot probe heard the guest: ${JSON.stringify(l.probe)}`);
  assert.equal((await virsh(daemon.uri, ['domstate', '--', l.domain])).trim(), 'running');
  assert.deepEqual(
    await guestPing(l.domain),
    { return: {} },
    "the recovered guest's agent answers the test too",
  );
  const xml = await virsh(daemon.uri, ['dumpxml', '--', l.domain]);
  const doc = parseXml(xml).domain as XmlNode;
  const protectedDomain = parseXml(await virsh(daemon.uri, ['dumpxml', '--inactive', '--', NAME]))
    .domain as XmlNode;
  assert.equal(doc.uuid, l.uuid);
  assert.notEqual(doc.uuid, protectedDomain.uuid, 'a new UUID');
  assert.deepEqual(
    [doc.memory, doc.vcpu],
    [protectedDomain.memory, protectedDomain.vcpu],
    'same memory and CPUs',
  );
  const image = diskSourceOf(l.domain, xml);
  assert.ok(image.startsWith(bed.stack.stateDir), `its disk is the materialized image (${image})`);
  assert.ok(
    imageOf(image).subarray(0, pointImage.length).equals(pointImage),
    'its disk holds the point, byte for byte',
  );
  return l.domain;
}

test('protect keeps the domain definition in the vault, as libvirt keeps it', async () => {
  await machines.protect(bed.ctx, { name: NAME, host: 'lvhost', domain: NAME, policy: 'manual' });
  await waitForStatus(bed.ctx, NAME, (s) => s.state === 'protected');
  const kept = (await bed.ctx.vault.read<KeptDomain>(keptDomainDoc(NAME)))?.value;
  assert.ok(kept, 'the vault keeps the definition');
  assert.equal(kept.domain, NAME);
  assert.equal(kept.host, 'lvhost');
  const now = parseXml(await virsh(daemon.uri, ['dumpxml', '--inactive', '--', NAME])).domain as XmlNode;
  assert.deepEqual(parseXml(kept.xml).domain, now, "the kept XML is libvirt's inactive definition");
});

test('a recovery host that is unknown, or not libvirt, is refused with the fix; nothing is stored', async () => {
  const refusal = (code: string, pattern: RegExp) => (err: unknown) =>
    err instanceof OperationError && err.code === code && pattern.test(err.message);
  await assert.rejects(
    failover.configureRecovery(bed.ctx, NAME, { target: 'libvirt', libvirt: { recoveryHost: 'nohost' } }),
    refusal('not-found', /no host named nohost; known hosts: .*osr host add nohost --libvirt/),
  );
  await assert.rejects(
    failover.configureRecovery(bed.ctx, NAME, { target: 'libvirt', libvirt: { recoveryHost: 'sockhost' } }),
    refusal('invalid', /host sockhost is a sockets host, not libvirt: --recovery-host takes a libvirt host/),
  );
  await assert.rejects(
    failover.configureRecovery(bed.ctx, NAME, { target: 'libvirt' }),
    refusal('invalid', /needs --recovery-host/),
  );
  assert.equal((await failover.getRecoverySettings(bed.ctx, NAME)).target, undefined, 'nothing was stored');
});

test('drills define domains from the kept XML, the probe hears each boot, cleanup removes exactly each', async () => {
  await failover.configureRecovery(bed.ctx, NAME, { target: 'libvirt', libvirt: { recoveryHost: 'drhost' } });
  domainsBefore = await names(['list', '--all', '--name']);
  const networksBefore = await names(['net-list', '--all', '--name']);
  const point = await machines.takePoint(bed.ctx, NAME, { kind: 'crash' });
  const pointImage = await exportedImage(bed.ctx, await pointById(bed.ctx, NAME, point.id), 'vda');

  const first = await failover.startTestFailover(bed.ctx, NAME, { point: point.id });
  assert.equal(first.status?.state, 'ready', first.status?.error);
  const one = await assertRecoveredDomain(first.status!, pointImage);
  assert.equal(one, `${NAME}-drill-${first.ref.job}`);
  await assertReplays(
    (await bed.ctx.client()).workflow.getHandle(first.ref.workflowId),
    'testFailover-libvirt-drill',
  );

  const second = await failover.startTestFailover(bed.ctx, NAME, { point: point.id, another: true });
  assert.equal(second.status?.state, 'ready', second.status?.error);
  const two = await assertRecoveredDomain(second.status!, pointImage);
  assert.deepEqual(await names(['list', '--all', '--name']), [...domainsBefore, one, two].sort());

  const [cleaned] = await failover.cleanupTestFailover(bed.ctx, first.ref.job);
  assert.equal(cleaned?.status?.state, 'cleaned-up');
  assert.deepEqual(
    await names(['list', '--all', '--name']),
    [...domainsBefore, two].sort(),
    'the other drill remains',
  );
  assert.deepEqual(await guestPing(two), { return: {} }, 'and still runs');
  await assertReplays(
    (await bed.ctx.client()).workflow.getHandle(cleaned!.ref.workflowId),
    'cleanupTestFailover-libvirt-drill',
  );

  await failover.cleanupTestFailover(bed.ctx, second.ref.job);
  assert.deepEqual(await names(['list', '--all', '--name']), domainsBefore, 'virsh list --all is as before');
  assert.deepEqual(await names(['net-list', '--all', '--name']), networksBefore);
  assert.equal(
    (await virsh(daemon.uri, ['domstate', '--', NAME])).trim(),
    'running',
    'the protected domain runs on',
  );
});

test('failover and commit leave the recovered domain running on libvirt', async () => {
  const started = await failover.startFailover(bed.ctx, NAME, { point: 'latest' });
  assert.equal(started.status?.state, 'failed-over', started.status?.error);
  const point = await pointById(bed.ctx, NAME, started.status!.point!.id);
  const domain = await assertRecoveredDomain(started.status!, await exportedImage(bed.ctx, point, 'vda'));
  assert.equal(domain, `${NAME}-failover-${started.ref.job}`);
  const committed = await failover.commitFailover(bed.ctx, NAME);
  assert.equal(committed.state, 'committed');
  assert.equal(
    (await virsh(daemon.uri, ['domstate', '--', domain])).trim(),
    'running',
    'commit keeps the domain',
  );
  assert.deepEqual(await guestPing(domain), { return: {} });
  await assertReplays(
    (await bed.ctx.client()).workflow.getHandle(started.ref.workflowId),
    'failover-libvirt',
  );
  // The test's own: the failed-over domain goes with the daemon.
  await virsh(daemon.uri, ['destroy', '--', domain]);
});

test('a domain without a guest agent is heard on its serial console, and only by the line asked for', async () => {
  const quiet = await startLibvirtTestVm(daemon, { name: 'lvs', disks: [{ sizeBytes: 8 * MiB }] });
  try {
    await machines.protect(bed.ctx, { name: 'lvs', host: 'lvhost', domain: 'lvs', policy: 'manual' });
    await waitForStatus(bed.ctx, 'lvs', (s) => s.state === 'protected');
    // The test guest has no getty: its init says so once it serves.
    await failover.configureRecovery(bed.ctx, 'lvs', {
      target: 'libvirt',
      libvirt: { recoveryHost: 'drhost', consolePattern: 'osr-guest: serving on' },
    });
    const drill = await failover.startTestFailover(bed.ctx, 'lvs');
    const l = drill.status?.libvirt;
    assert.equal(drill.status?.state, 'ready', drill.status?.error);
    assert.equal(l?.hears, 'serial-console');
    assert.equal(l?.probe?.ok, true, JSON.stringify(l?.probe));
    // The test reads the console itself: a line only the guest's init writes.
    const log = path.join(drill.status!.materialized!.dir, 'console.log');
    assert.match(fs.readFileSync(log, 'utf8'), /osr-guest: serving on \/dev\/ttyS1/);
    await failover.cleanupTestFailover(bed.ctx, drill.ref.job);
    assert.equal(fs.existsSync(log), false);
    assert.ok(!(await names(['list', '--all', '--name'])).includes(l!.domain));

    // Kernel messages are not an answer: a guest that never shows the line is reported as not up.
    await failover.configureRecovery(bed.ctx, 'lvs', {
      libvirt: { consolePattern: 'a line no guest prints', bootTimeoutSeconds: 20 },
    });
    const silent = await failover.startTestFailover(bed.ctx, 'lvs');
    assert.equal(silent.status?.state, 'ready', "a failed probe is the drill's finding, not its failure");
    assert.equal(silent.status?.libvirt?.probe?.ok, false);
    assert.match(silent.status?.libvirt?.probe?.detail ?? '', /no line matching \/a line no guest prints\//);
    await failover.cleanupTestFailover(bed.ctx, silent.ref.job);
    assert.ok(!(await names(['list', '--all', '--name'])).includes(silent.status!.libvirt!.domain));
  } finally {
    await quiet.remove();
  }
});

test("a drill's isolated network: a bridge with no forward, removed by its tag and nothing else", async () => {
  const before = await names(['net-list', '--all', '--name']);
  const tag: OsrTag = { machine: NAME, job: '20261206T000000000Z', kind: 'drill' };
  const mine = 'osr-drill-lvt-20261206T000000000Z';
  await ensureNetwork(daemon.uri, mine, drillNetworkXml(mine, 'osrdtest00001', tag), tag);
  // A retried step finds its own network; someone else's of the same name is never taken.
  await ensureNetwork(daemon.uri, mine, drillNetworkXml(mine, 'osrdtest00001', tag), tag);
  await virshWithXml(daemon.uri, ['net-define', '@n'], {
    n: '<network><name>theirs</name><bridge name="osrdtest00002"/></network>',
  });
  await assert.rejects(
    ensureNetwork(daemon.uri, 'theirs', drillNetworkXml('theirs', 'osrdtest00002', tag), tag),
    /already has a network named theirs that this drill .* did not make: OSR never replaces it/,
  );
  assert.match(await virsh(daemon.uri, ['net-info', '--', mine]), /^Active:\s+yes/m);
  const live = parseXml(await virsh(daemon.uri, ['net-dumpxml', '--', mine])).network as XmlNode;
  assert.equal(live.forward, undefined, 'isolated: nothing leaves it');
  assert.match(execFileSync('ip', ['link', 'show', 'osrdtest00001'], { encoding: 'utf8' }), /osrdtest00001/);
  const other = { ...tag, job: '20261206T000000001Z' };
  assert.deepEqual(await removeTagged(daemon.uri, other), [], "another job's cleanup takes nothing");
  assert.deepEqual(await removeTagged(daemon.uri, tag), [`network ${mine}`]);
  assert.deepEqual(await names(['net-list', '--all', '--name']), [...before, 'theirs'].sort());
  await virsh(daemon.uri, ['net-undefine', '--', 'theirs']);
  assert.throws(
    () => execFileSync('ip', ['link', 'show', 'osrdtest00001'], { stdio: 'pipe' }),
    'the bridge is gone',
  );
});
