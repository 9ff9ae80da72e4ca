// The agent test guest (scripts/build-agent-guest.sh): qemu-system-x86_64 with the test guest's
// kernel and the agent guest's initramfs, virtio disks, and QEMU user networking whose only way in
// is SSH forwarded from a loopback port. OSR gets no QMP or serial channel to it: like a machine
// on the network, it is reached over SSH (root by a key made for this boot) and reaches the host's
// loopback at 10.0.2.2.
// With a system disk (systemDiskBytes) the guest is a machine that survives reboots: an ext4 disk
// (serial osr-system) holds /opt, /etc/osr-agent, /etc/init.d, /var/lib and /var/log, its init
// starts the installed services at boot and stops them at shutdown; QEMU then reboots instead of
// exiting, and the test alone holds a QMP monitor (qmpSocket) to crash the guest or cut its link.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sshKeyPair } from './ssh-key';
import { freePort } from '../../lib/process/ports';
import { createQcow2 } from '../../lib/qemu/storage-daemon';
import { hostKeyFingerprint, openSsh, type SshSession } from '../../lib/ssh/session';
import { chooseAccel, testGuestDir } from './test-vm';

export interface AgentGuest {
  /** root@127.0.0.1:<port> */
  sshTarget: string;
  keyFile: string;
  /** The guest's SSH host key fingerprint, from the key made at build (SHA256:…). */
  hostKeyFingerprint: string;
  /** What the guest reaches the host's loopback as. */
  hostAddress: string;
  consoleLog: string;
  /** The test's own QMP monitor of the guest's QEMU (only with a system disk). */
  qmpSocket?: string;
  /** The QEMU netdev of the guest's only link (for set_link). */
  netdev: string;
  /** How many times the guest said it was ready (boots, reboots included). */
  boots(): number;
  /** Waits until the guest has finished its `n`-th boot. */
  waitForBoot(n: number, timeoutMs?: number): Promise<void>;
  /** Runs a command as root over SSH. */
  ssh(command: string, timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /** One SSH connection for many commands (no handshake each: a workload's writes); closed by stop(). */
  openShell(): Promise<SshSession>;
  /** Copies a local file into the guest (SFTP). */
  put(local: string, remote: string): Promise<void>;
  stop(): Promise<void>;
}

const READY = 'osr-agent-guest: ready';

export function agentGuestDir(): string {
  return path.join(path.dirname(testGuestDir()), 'agent-guest');
}

/** What boots the agent test guest: kernel, initramfs, and its SSH host key (`ssh-ed25519 AAAA…`). */
export function agentGuestFiles(): { kernel: string; initrd: string; hostKeyLine: string } {
  const base = testGuestDir();
  const own = agentGuestDir();
  const kernel = fs.existsSync(path.join(base, 'vmlinux'))
    ? path.join(base, 'vmlinux')
    : path.join(base, 'vmlinuz');
  const initrd = path.join(own, 'initrd.img');
  const hostKeyLine = fs.existsSync(path.join(own, 'host_key.pub'))
    ? fs.readFileSync(path.join(own, 'host_key.pub'), 'utf8').trim()
    : '';
  if (!fs.existsSync(initrd) || !hostKeyLine)
    throw new Error(`no agent test guest in ${own}: build it with  bash scripts/build-agent-guest.sh`);
  return { kernel, initrd, hostKeyLine };
}

export async function startAgentGuest(options: {
  hostname: string;
  diskSizes: number[];
  bootTimeoutMs?: number;
  /** A persistent system disk of this size (ext4, made here), attached after the other disks. */
  systemDiskBytes?: number;
}): Promise<AgentGuest> {
  const { kernel, initrd, hostKeyLine } = agentGuestFiles();
  const hostKey = hostKeyFingerprint(Buffer.from(hostKeyLine.split(' ')[1] as string, 'base64'));

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-agvm-'));
  const keys = sshKeyPair();
  const keyFile = path.join(dir, 'id_ed25519');
  fs.writeFileSync(keyFile, keys.private, { mode: 0o600 });
  const consoleLog = path.join(dir, 'console.log');
  const consoleSocket = path.join(dir, 'console.sock');
  const sshPort = await freePort();
  let child: ChildProcess | undefined;
  let consoleServer: net.Server | undefined;
  let text = '';
  let readyCount = 0;
  const bootWaiters = new Set<{ n: number; resolve: () => void }>();
  const persistent = options.systemDiskBytes !== undefined;
  const qmpSocket = persistent ? path.join(dir, 'qmp.sock') : undefined;
  let exited: Promise<never> = new Promise<never>(() => undefined);
  const waitForBoot = async (n: number, timeoutMs: number): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => (readyCount >= n ? resolve() : bootWaiters.add({ n, resolve }))),
      exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(`agent guest not ready (boot ${n}) within ${timeoutMs} ms:\n${text.slice(-2000)}`),
            ),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  };
  const sessions = new Set<SshSession>();
  const stop = async (): Promise<void> => {
    for (const s of sessions) s.close();
    consoleServer?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child?.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    // The console comes to this server as the guest boots: "ready" is seen the moment it is printed.
    consoleServer = net.createServer((s) => {
      s.on('data', (d: Buffer) => {
        fs.appendFileSync(consoleLog, d);
        text += d.toString();
        const n = text.split(READY).length - 1;
        if (n > readyCount) {
          readyCount = n;
          for (const w of [...bootWaiters])
            if (n >= w.n) {
              bootWaiters.delete(w);
              w.resolve();
            }
        }
      });
      s.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => consoleServer?.listen(consoleSocket, resolve));
    const args = [
      ...(chooseAccel() === 'kvm' ? ['-accel', 'kvm', '-accel', 'tcg'] : ['-accel', 'tcg']),
      ...['-nodefaults', '-no-user-config', '-display', 'none', '-m', '512', '-smp', '1'],
      // A machine that survives reboots reboots; the others exit (a reboot there would lose all).
      ...(persistent ? ['-qmp', `unix:${qmpSocket},server=on,wait=off`] : ['-no-reboot']),
      // The CPU's random numbers seed the kernel at once: without them dropbear waits for entropy
      // after a reboot under TCG for minutes.
      ...(persistent ? ['-cpu', 'max'] : []),
      ...['-kernel', kernel, '-initrd', initrd],
      '-append',
      `console=ttyS0 panic=-1 quiet${persistent ? ' random.trust_cpu=on' : ''} osr.disks=${options.diskSizes.length + (persistent ? 1 : 0)} osr.hostname=${options.hostname} osr.sshkey=${keys.public.split(' ')[1]}`,
      ...[
        '-chardev',
        `socket,id=console,path=${consoleSocket}`,
        '-device',
        'isa-serial,chardev=console,index=0',
      ],
      ...[
        '-netdev',
        `user,id=net0,hostfwd=tcp:127.0.0.1:${sshPort}-:22`,
        '-device',
        'virtio-net-pci,netdev=net0',
      ],
    ];
    for (const [i, size] of options.diskSizes.entries()) {
      const file = path.join(dir, `disk${i}.qcow2`);
      await createQcow2(file, size);
      args.push(
        '-drive',
        `file=${file},if=none,id=d${i},format=qcow2`,
        '-device',
        `virtio-blk-pci,drive=d${i},serial=disk${i}`,
      );
    }
    if (persistent) {
      const file = path.join(dir, 'system.raw');
      fs.writeFileSync(file, '');
      fs.truncateSync(file, options.systemDiskBytes);
      execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'osr-system', file], { stdio: 'pipe' });
      args.push(
        '-drive',
        `file=${file},if=none,id=sys,format=raw`,
        '-device',
        'virtio-blk-pci,drive=sys,serial=osr-system',
      );
    }
    const qemuLog = path.join(dir, 'qemu.log');
    const logFd = fs.openSync(qemuLog, 'w');
    child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    const proc = child;
    exited = new Promise<never>((_, reject) =>
      proc.once('exit', (code, signal) =>
        reject(
          new Error(`qemu exited (${signal ?? code}): ${fs.readFileSync(qemuLog, 'utf8').slice(-2000)}`),
        ),
      ),
    );
    exited.catch(() => undefined);
    await waitForBoot(1, options.bootTimeoutMs ?? 180_000);
  } catch (err) {
    await stop();
    throw err;
  }
  const target = { user: 'root', host: '127.0.0.1', port: sshPort };
  return {
    sshTarget: `root@127.0.0.1:${sshPort}`,
    keyFile,
    hostKeyFingerprint: hostKey,
    hostAddress: '10.0.2.2',
    consoleLog,
    async openShell() {
      const session = await openSsh(target, Buffer.from(keys.private), hostKey);
      sessions.add(session);
      return session;
    },
    ...(qmpSocket ? { qmpSocket } : {}),
    netdev: 'net0',
    boots: () => readyCount,
    waitForBoot: (n, timeoutMs = 240_000) => waitForBoot(n, timeoutMs),
    async ssh(command, timeoutMs = 120_000) {
      const session = await openSsh(target, Buffer.from(keys.private), hostKey);
      sessions.add(session);
      try {
        return await session.run(command, timeoutMs);
      } finally {
        session.close();
        sessions.delete(session);
      }
    },
    async put(local, remote) {
      const session = await openSsh(target, Buffer.from(keys.private), hostKey);
      sessions.add(session);
      try {
        await session.put([{ local, remote, mode: 0o600 }]);
      } finally {
        session.close();
        sessions.delete(session);
      }
    },
    stop,
  };
}
