// A libvirt host reached over SSH, as a source and for discovery. This machine plays the remote
// host: a private OpenSSH server on loopback (test/helpers/ssh-server.ts: its own port, host key
// and authorized key) in front of a private libvirtd running the test guest, reached as
// qemu+libssh://root@127.0.0.1:<port>/session?socket=…&keyfile=…&known_hosts=… (libvirt's
// libssh transport runs `nc` on the far side through sshd). The backup's NBD export is read
// through an SSH tunnel: sshd's own log shows the process server's channels to the export socket.
// Bad input (a closed port, an unknown host key, a key the host does not authorize, a URI that
// turns host-key checking off) is refused with the fix, and nothing is registered. An
// app-consistent point freezes the guest through libvirt (domfsfreeze) over the same URI.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { ApiServer } from '../../api/server';
import { openLibvirtFrozenDisk } from '../../lib/libvirt/frozen-disk';
import { virsh } from '../../lib/libvirt/virsh';
import { SourceUnreachableError } from '../../lib/sources/source-connector';
import * as machines from '../../operations/machines';
import type { DiscoveredMachine } from '../../shared/host-types';
import { startTestApi } from '../helpers/api-client';
import { assertRefused, cliFor } from '../helpers/cli';
import { startLibvirtDaemon, type LibvirtDaemon } from '../helpers/libvirt-daemon';
import { startLibvirtTestVm, type LibvirtTestVm } from '../helpers/libvirt-vm';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pollFor } from '../helpers/poll';
import { startSshServer, type SshServer } from '../helpers/ssh-server';
import { recordsIn } from '../helpers/test-vm';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const NAME = 'rlv1';
const token = 'libvirt-remote-test-token-0123456789';
let bed: Testbed;
let daemon: LibvirtDaemon;
let sshd: SshServer;
let vm: LibvirtTestVm;
let api: ApiServer;
const osr = cliFor(() => bed.stack.env);

/** The remote URI of the test's libvirtd, with what the test changes in it. */
function remoteUri(o: { transport?: string; port?: number; keyFile?: string; knownHosts?: string } = {}) {
  const socket = new URL(daemon.uri).searchParams.get('socket');
  const q = `socket=${socket}&keyfile=${o.keyFile ?? sshd.keyFile}&known_hosts=${o.knownHosts ?? sshd.knownHosts}`;
  return `qemu+${o.transport ?? 'libssh'}://root@127.0.0.1:${o.port ?? sshd.port}/session?${q}`;
}

before(async () => {
  daemon = await startLibvirtDaemon();
  sshd = await startSshServer();
  bed = await startTestbed({
    processServerEnv: () => ({ OSR_PROCESS_SERVER_HOSTS: 'rkvm,closed,stranger,unknown' }),
  });
  api = await startTestApi(bed, token, 'libvirt-remote');
  vm = await startLibvirtTestVm(daemon, { name: NAME, disks: [{ sizeBytes: 8 * MiB }], guestAgent: true });
});

after(async () => {
  await api?.close();
  await vm?.remove().catch(() => undefined);
  await daemon?.stop();
  await sshd?.stop();
  await bed?.stop();
});

/** The source disk as it is now (read beside the running domain). */
function sourceImage(): Buffer {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-rlvsrc-'));
  try {
    const raw = path.join(tmp, 'disk.raw');
    execFileSync('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', vm.disks[0]!.file, raw]);
    return fs.readFileSync(raw);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** OSR's tunnels to the test's sshd still running (ssh processes with -L to its port). */
function tunnelsRunning(): string[] {
  const found: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    if (argv[0] === 'ssh' && argv.includes('-L') && argv.includes(String(sshd.port))) found.push(pid);
  }
  return found;
}

async function hostsListed(): Promise<string[]> {
  const res = await osr(['host', 'list', '--json']);
  assert.equal(res.code, 0, res.stderr);
  return (JSON.parse(res.stdout) as Array<{ name: string }>).map((h) => h.name);
}

test('bad remote hosts are refused with the fix, and nothing is registered', async () => {
  const closed = await osr(['host', 'add', 'closed', '--libvirt', remoteUri({ port: 1 })]);
  assertRefused(closed, 2, /no SSH server answers at root@127\.0\.0\.1:1 .*check the host name and port/);
  const unknown = await osr([
    'host',
    'add',
    'unknown',
    '--libvirt',
    remoteUri({ knownHosts: sshd.emptyKnownHosts }),
  ]);
  assertRefused(
    unknown,
    2,
    new RegExp(
      `SSH host key of root@127\\.0\\.0\\.1:${sshd.port} is not in .*empty_known_hosts.*ssh-keyscan -p ${sshd.port} 127\\.0\\.0\\.1`,
    ),
  );
  const stranger = await osr([
    'host',
    'add',
    'stranger',
    '--libvirt',
    remoteUri({ keyFile: sshd.strangerKeyFile }),
  ]);
  assertRefused(stranger, 2, /refused the login .*Permission denied.*authorized_keys/);
  // Refused before anything is asked of the host: what libvirt would ignore or not check.
  assertRefused(
    await osr(['host', 'add', 'rkvm', '--libvirt', remoteUri({ transport: 'ssh' })]),
    2,
    /ssh transport .*ignores known_hosts=: use qemu\+libssh:\/\//,
  );
  assertRefused(
    await osr(['host', 'add', 'rkvm', '--libvirt', `${remoteUri()}&no_verify=1`]),
    2,
    /turns host-key checking off/,
  );
  assertRefused(
    await osr(['host', 'add', 'rkvm', '--libvirt', 'qemu+tls://kvm1.example.net/system']),
    2,
    /over tls, but OSR reads a remote host's backup export through SSH: use qemu\+ssh:\/\//,
  );
  assert.deepEqual(await hostsListed(), [], 'no host registered');
});

test('added over SSH, the remote host is discovered through the CLI and the API', async () => {
  const res = await osr(['host', 'add', 'rkvm', '--libvirt', remoteUri()]);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /added host rkvm .*1 machine\(s\) found/);
  const cli = await osr(['discover', '--host', 'rkvm', '--json']);
  assert.equal(cli.code, 0, cli.stderr);
  const fromApi = (await (
    await fetch(`${api.url}/v1/discover?host=rkvm`, { headers: { Authorization: `Bearer ${token}` } })
  ).json()) as { machines: DiscoveredMachine[] };
  for (const [via, found] of [
    ['CLI', (JSON.parse(cli.stdout) as { machines: DiscoveredMachine[] }).machines],
    ['API', fromApi.machines],
  ] as const) {
    assert.deepEqual(
      found.map((m) => [m.host, m.name, m.state, m.disks.map((d) => [d.diskId, d.sizeBytes, d.format])]),
      [['rkvm', NAME, 'running', [['vda', 8 * MiB, 'qcow2']]]],
      `discovery through the ${via}`,
    );
    assert.equal(found[0]?.changeTracking.possible, true);
  }
});

test('protected over SSH: the first point is the source byte for byte, read through a tunnel', async () => {
  for (let i = 1; i <= 5; i++) await vm.writeRecord(0, i);
  const res = await osr(['protect', NAME, '--host', 'rkvm', '--domain', NAME, '--policy', 'manual']);
  assert.equal(res.code, 0, res.stderr);
  const status = await waitForStatus(bed.ctx, NAME, (s) => s.state === 'protected', 240_000);
  const point = await pointById(bed.ctx, NAME, status.lastPoint!.id);
  assert.ok(
    sourceImage().equals(await exportedImage(bed.ctx, point, 'vda')),
    'the first point is the source disk byte for byte',
  );
  const targets = sshd.streamLocalTargets();
  assert.ok(targets.length >= 1, 'the process server read the export through sshd');
  assert.ok(
    targets.every((t) => /^\/tmp\/osr-lv-[0-9a-f]{16}\/nbd\.sock$/.test(t)),
    `every channel went to the backup job's socket on the host: ${targets.join(', ')}`,
  );
  assert.equal(fs.existsSync(path.dirname(targets[0]!)), false, "the job's folder on the host is removed");
  await assert.rejects(virsh(daemon.uri, ['backup-dumpxml', NAME]), /no domain backup job/);
});

test('a delta cycle over SSH sends the changed blocks only, and the point holds every write', async () => {
  const before = await machines.machineStatus(bed.ctx, NAME);
  const channels = sshd.streamLocalTargets().length;
  for (let i = 6; i <= 12; i++) await vm.writeRecord(0, i);
  const taken = await machines.takePoint(bed.ctx, NAME, { kind: 'crash' });
  const point = await pointById(bed.ctx, NAME, taken.id);
  const image = await exportedImage(bed.ctx, point, 'vda');
  assert.deepEqual(
    recordsIn(image).map((r) => r.record),
    Array.from({ length: 12 }, (_, i) => i + 1),
    'records 1..12 in the point',
  );
  assert.ok(sourceImage().equals(image), 'the point is the source disk byte for byte');
  const after = await machines.machineStatus(bed.ctx, NAME);
  const changed = after.stats.bytesChanged - before.stats.bytesChanged;
  assert.ok(changed > 0 && changed < MiB, `a delta: ${changed} bytes changed of the 8 MiB disk`);
  assert.ok(sshd.streamLocalTargets().length > channels, 'read through the tunnel again');
  assert.deepEqual(tunnelsRunning(), [], 'every tunnel closed with its reader');
});

test("an app-consistent point over SSH: libvirt freezes the guest's filesystems through its agent", async () => {
  await pollFor(async () => ((await vm.agent('guest-ping')) !== undefined ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 250,
    failure: (e) => new Error(`the guest agent never answered libvirt: ${String(e)}`),
  });
  const cleared = await vm.run('rm -f /run/fsfreeze.log');
  assert.equal(cleared.code, 0, cleared.output);
  const brief = await machines.takePoint(bed.ctx, NAME, { kind: 'app' });
  assert.equal((await pointById(bed.ctx, NAME, brief.id)).kind, 'app', 'the catalog says app-consistent');
  const status = await machines.machineStatus(bed.ctx, NAME);
  assert.ok(
    !status.alerts.some((a) => a.kind === 'quiesce-failed'),
    `no quiesce failure: ${JSON.stringify(status.alerts)}`,
  );
  const log = await vm.run('cat /run/fsfreeze.log');
  assert.deepEqual(
    log.output
      .trim()
      .split('\n')
      .map((l) => l.split(' ')[0]),
    ['freeze', 'thaw'],
    `the guest's agent froze then thawed once: ${log.output}`,
  );
  assert.equal(await vm.agent('guest-fsfreeze-status'), 'thawed');
});

test('failback onto a remote host is refused before anything runs (not built)', async () => {
  assertRefused(
    await osr(['reprotect', NAME]),
    2,
    /domain of a remote libvirt host .*failing back onto it is not built yet/,
  );
  assert.equal((await virsh(daemon.uri, ['domstate', NAME])).trim(), 'running', 'the domain runs on');
});

test("a job's socket gone from the host: the reader says the source does not answer", async () => {
  await assert.rejects(
    openLibvirtFrozenDisk({
      diskId: 'vda',
      sizeBytes: 8 * MiB,
      exportName: 'vda',
      nbdSocket: '/tmp/osr-lv-0000000000000000/nbd.sock',
      nbdSocketHost: remoteUri(),
    }),
    (err: Error) =>
      err instanceof SourceUnreachableError &&
      /nbd\.sock on 127\.0\.0\.1: .*open failed.*\(the domain's backup job ended\)/.test(err.message),
  );
  assert.deepEqual(tunnelsRunning(), [], 'its tunnel is closed');
});
