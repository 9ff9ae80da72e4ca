// The test guest (test/guest/init) as a libvirt domain of a test's private libvirtd: qcow2 (or raw)
// disks on virtio with serials disk0, disk1 …, the console (ttyS0) to a file, and the guest's
// command line (ttyS1) to a unix socket this helper serves, so the test drives the guest as with
// test-vm.ts, while libvirt alone holds the domain's monitor. Domain type qemu: TCG, no KVM.
// With `guestAgent`, the domain has the guest agent's channel (org.qemu.guest_agent.0), where the
// guest's init starts the real qemu-ga; libvirt alone talks to it (`virsh qemu-agent-command`).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { buildXml, virsh, virshWithXml } from '../../lib/libvirt/virsh';
import { createQcow2 } from '../../lib/qemu/storage-daemon';
import { GuestChannel } from './guest-channel';
import { giveToDaemon, type LibvirtDaemon } from './libvirt-daemon';
import { formatRecord, SECTOR, testGuestDir } from './test-vm';

export interface LibvirtTestVm {
  domain: string;
  disks: Array<{ target: string; file: string; format: 'qcow2' | 'raw'; guestDevice: string }>;
  consoleLog: string;
  run(command: string, timeoutMs?: number): Promise<{ code: number; output: string }>;
  /** A guest-agent command through libvirt (with `guestAgent`); resolves with its `return`. */
  agent(execute: string): Promise<unknown>;
  writeRecord(disk: number, n: number): Promise<void>;
  /** Reboots the guest from inside (its QEMU process stays) and waits until it is up again. */
  reboot(): Promise<void>;
  /** Shuts the domain off (virsh destroy) and starts it again, waiting for the guest. */
  powerCycle(alreadyOff?: boolean): Promise<void>;
  /** Kills the domain's QEMU (kill -9: a crash; its bitmaps are not saved) and starts it again. */
  crash(): Promise<void>;
  /** Undefines the domain (with its checkpoints' metadata) and closes the console server. */
  remove(): Promise<void>;
}

/** A domain definition for the test guest; `guestSocket` is where its ttyS1 connects. */
export function testGuestDomainXml(options: {
  name: string;
  disks: Array<{ target: string; file: string; format: string }>;
  consoleLog: string;
  guestSocket: string;
  guestAgent?: boolean;
}): string {
  const guest = testGuestDir();
  const elf = path.join(guest, 'vmlinux');
  return buildXml({
    domain: {
      '@type': 'qemu',
      name: options.name,
      memory: { '@unit': 'MiB', '#text': '128' },
      vcpu: '1',
      os: {
        type: { '@arch': 'x86_64', '@machine': 'pc', '#text': 'hvm' },
        kernel: fs.existsSync(elf) ? elf : path.join(guest, 'vmlinuz'),
        initrd: path.join(guest, 'initrd.img'),
        cmdline: `console=ttyS0 panic=-1 quiet osr.disks=${options.disks.length}`,
      },
      on_reboot: 'restart',
      devices: {
        disk: options.disks.map((d) => ({
          '@type': 'file',
          '@device': 'disk',
          driver: { '@name': 'qemu', '@type': d.format },
          source: { '@file': d.file },
          target: { '@dev': d.target, '@bus': 'virtio' },
          serial: `disk${d.target.charCodeAt(2) - 'a'.charCodeAt(0)}`,
        })),
        serial: [
          { '@type': 'file', source: { '@path': options.consoleLog }, target: { '@port': '0' } },
          {
            '@type': 'unix',
            source: { '@mode': 'connect', '@path': options.guestSocket },
            target: { '@port': '1' },
          },
        ],
        // libvirt picks the host side's socket path itself and is the agent's only client.
        ...(options.guestAgent
          ? {
              channel: [
                { '@type': 'unix', target: { '@type': 'virtio', '@name': 'org.qemu.guest_agent.0' } },
              ],
            }
          : {}),
        memballoon: { '@model': 'none' },
      },
    },
  });
}

export async function startLibvirtTestVm(
  daemon: LibvirtDaemon,
  options: {
    name: string;
    /** `image`: a raw image the disk starts as (converted to qcow2; its size wins). */
    disks?: Array<{ sizeBytes: number; format?: 'qcow2' | 'raw'; image?: string }>;
    guestAgent?: boolean;
  },
): Promise<LibvirtTestVm> {
  const dir = path.join(daemon.dir, options.name);
  fs.mkdirSync(dir, { recursive: true });
  giveToDaemon(dir);
  const disks: LibvirtTestVm['disks'] = [];
  for (const [i, d] of (options.disks ?? [{ sizeBytes: 16 * 1024 * 1024 }]).entries()) {
    const format = d.format ?? 'qcow2';
    const file = path.join(dir, `disk${i}.${format}`);
    if (d.image) execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', format, d.image, file]);
    else if (format === 'qcow2') await createQcow2(file, d.sizeBytes);
    else fs.writeFileSync(file, Buffer.alloc(d.sizeBytes));
    giveToDaemon(file);
    disks.push({ target: `vd${String.fromCharCode(97 + i)}`, file, format, guestDevice: '' });
  }
  const consoleLog = path.join(dir, 'console.log');
  const guestSocket = path.join(dir, 'guest.sock');
  const channel = new GuestChannel();
  let serial: net.Socket | undefined;
  const server = net.createServer((s) => {
    if (serial) return void s.destroy();
    serial = s;
    channel.attach(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(guestSocket, resolve);
  });
  fs.chmodSync(guestSocket, 0o777);
  const xml = testGuestDomainXml({
    name: options.name,
    disks,
    consoleLog,
    guestSocket,
    guestAgent: options.guestAgent,
  });
  await virshWithXml(daemon.uri, ['define', '@dom'], { dom: xml });
  await virsh(daemon.uri, ['start', '--', options.name]);
  let current = channel;
  const ready = async (c: GuestChannel, count: number) => {
    await c.booted(count, 120_000).catch((err: Error) => {
      const log = fs.existsSync(consoleLog) ? fs.readFileSync(consoleLog, 'utf8').slice(-1500) : '';
      throw new Error(`${err.message}\n--- console ---\n${log}`);
    });
  };
  await ready(channel, 1);
  const map = await channel.run('for d in /sys/block/vd*; do echo "$(cat $d/serial) ${d##*/}"; done', 10_000);
  for (const d of disks) {
    const serialName = `disk${d.target.charCodeAt(2) - 97}`;
    const line = map.output.split('\n').find((l) => l.startsWith(`${serialName} `));
    if (!line) throw new Error(`guest has no disk ${serialName}: ${map.output}`);
    d.guestDevice = `/dev/${line.split(' ')[1]}`;
  }
  async function powerCycle(alreadyOff = false): Promise<void> {
    if (!alreadyOff) await virsh(daemon.uri, ['destroy', '--', options.name]);
    serial = undefined;
    current.close(new Error('powered off'));
    const next = new GuestChannel();
    server.removeAllListeners('connection');
    server.on('connection', (s: net.Socket) => {
      if (serial) return void s.destroy();
      serial = s;
      next.attach(s);
    });
    current = next;
    await virsh(daemon.uri, ['start', '--', options.name]);
    await ready(next, 1);
  }
  return {
    domain: options.name,
    disks,
    consoleLog,
    run: (command, timeoutMs = 60_000) => current.run(command, timeoutMs),
    async agent(execute) {
      const out = await virsh(daemon.uri, [
        'qemu-agent-command',
        '--',
        options.name,
        JSON.stringify({ execute }),
      ]);
      return (JSON.parse(out) as { return: unknown }).return;
    },
    async writeRecord(disk, n) {
      const d = disks[disk];
      if (!d) throw new Error(`no disk ${disk}`);
      const r = await current.run(
        `printf '%s\\n' '${formatRecord(n)}' | dd of=${d.guestDevice} bs=${SECTOR} seek=${n} count=1 ` +
          'iflag=fullblock oflag=direct conv=fsync,notrunc',
        60_000,
      );
      if (r.code !== 0) throw new Error(`writing record ${n} failed (exit ${r.code}): ${r.output}`);
    },
    async reboot() {
      const boots = current.boots;
      // The reply never comes: the guest is gone before it could answer.
      void current.run('sync; reboot -f', 5_000).catch(() => undefined);
      await ready(current, boots + 1);
    },
    async crash() {
      const pidFile = path.join(daemon.dir, 'run', 'libvirt', 'qemu', 'run', `${options.name}.pid`);
      process.kill(Number(fs.readFileSync(pidFile, 'utf8').trim()), 'SIGKILL');
      const deadline = Date.now() + 30_000;
      while ((await virsh(daemon.uri, ['domstate', '--', options.name])).trim() !== 'shut off') {
        if (Date.now() > deadline) throw new Error('libvirt did not see the domain crash');
        await new Promise((r) => setTimeout(r, 100));
      }
      await powerCycle(true);
    },
    powerCycle,
    async remove() {
      await virsh(daemon.uri, ['destroy', '--', options.name]).catch(() => undefined);
      await virsh(daemon.uri, ['undefine', '--checkpoints-metadata', '--', options.name]).catch(
        () => undefined,
      );
      current.close(new Error('removed'));
      server.close();
    },
  };
}
