// A real, tiny Linux guest for integration tests: qemu-system-x86_64 boots Debian's kernel with
// the initramfs of scripts/build-test-guest.sh (busybox, test/guest/init), with qcow2 disks on
// virtio-blk whose top block nodes are named disk0, disk1, … (what OSR protects). The test drives
// the guest over its second serial port (the line protocol documented in test/guest/init), gives
// `qmpSocket` to OSR's code under test, and keeps a private QMP monitor for itself (pause, resume,
// quit): QEMU serves one client per monitor.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { NbdClient } from '../../lib/qemu/nbd-client';
import { QmpClient, withTimeout } from '../../lib/qemu/qmp-client';
import { createQcow2 } from '../../lib/qemu/storage-daemon';
import { GuestChannel } from './guest-channel';

const execFileAsync = promisify(execFile);

export const SECTOR = 512;
const RECORD_MAGIC = 'OSR-RECORD ';
const RECORD_DIGITS = 10;

export interface TestVmDisk {
  /** Top block node name (disk0, disk1, …), also the virtio-blk serial seen by the guest. */
  node: string;
  file: string;
  format: 'qcow2' | 'raw';
  /** The guest's device, e.g. /dev/vda. */
  guestDevice: string;
}

export interface TestVmOptions {
  /** Per disk: a size in bytes (a qcow2 is created in the VM's folder) or an existing image. */
  disks?: Array<number | { file: string; format?: 'qcow2' | 'raw' }>;
  memoryMiB?: number;
  /** How long to wait for `osr-guest-ready` (default 90 s: TCG without KVM is slow). */
  bootTimeoutMs?: number;
  /** auto (default, or env OSR_TEST_VM_ACCEL): KVM when it is usable, otherwise TCG. */
  accel?: 'auto' | 'kvm' | 'tcg';
  /** Gives the guest a virtio-serial port for the QEMU guest agent (the guest's init runs qemu-ga on it). */
  guestAgent?: boolean;
}

export interface TestVm {
  dir: string;
  /** QMP monitor for the code under test (one client at a time). */
  qmpSocket: string;
  /** The host side of the guest agent's port (with `guestAgent`). */
  guestAgentSocket?: string;
  disks: TestVmDisk[];
  consoleLog: string;
  pid: number;
  /** The accelerator asked for (`kvm` still falls back to TCG if KVM cannot start). */
  accel: 'kvm' | 'tcg';
  /** Runs a shell command in the guest; resolves when the guest replied. */
  run(command: string, options?: { timeoutMs?: number }): Promise<{ code: number; output: string }>;
  /** Writes record `n` (one sector at sector `n`) to a disk; resolves once the disk acknowledged it. */
  writeRecord(disk: number | string, n: number, text?: string): Promise<void>;
  /** Reads sector `n` of a disk in the guest (bypassing its cache): the record there, or null. */
  readRecord(disk: number | string, n: number): Promise<number | null>;
  /** QMP `stop`/`cont` and `query-status` through the helper's private monitor. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  status(): Promise<string>;
  /** Quits QEMU (killing it if it does not quit), removes the folder. No process is left. */
  stop(): Promise<void>;
}

/** Where scripts/build-test-guest.sh puts the guest (or OSR_TEST_GUEST_DIR). */
export function testGuestDir(): string {
  if (process.env.OSR_TEST_GUEST_DIR) return process.env.OSR_TEST_GUEST_DIR;
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) || !fs.existsSync(path.join(dir, 'scripts'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the repository root above ${__dirname}`);
    dir = up;
  }
  return path.join(dir, '.osr', 'test-guest');
}

/** KVM if /dev/kvm is usable and the CPU shows virtualization (a /dev/kvm without it hangs guests). */
export function chooseAccel(wanted: TestVmOptions['accel'] = 'auto'): 'kvm' | 'tcg' {
  const env = process.env.OSR_TEST_VM_ACCEL;
  const choice = wanted === 'auto' && (env === 'kvm' || env === 'tcg') ? env : wanted;
  if (choice !== 'auto') return choice;
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
    const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
    return /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo) ? 'kvm' : 'tcg';
  } catch {
    return 'tcg';
  }
}

export async function startTestVm(options: TestVmOptions = {}): Promise<TestVm> {
  const guest = testGuestDir();
  // The uncompressed ELF kernel boots directly (PVH), seconds faster under TCG than the bzImage.
  const elf = path.join(guest, 'vmlinux');
  const kernel = fs.existsSync(elf) ? elf : path.join(guest, 'vmlinuz');
  const initrd = path.join(guest, 'initrd.img');
  if (!fs.existsSync(kernel) || !fs.existsSync(initrd)) {
    throw new Error(`no test guest in ${guest}: build it with  bash scripts/build-test-guest.sh`);
  }
  const accel = chooseAccel(options.accel);
  const bootTimeoutMs = options.bootTimeoutMs ?? 90_000;

  // Short paths: unix socket paths are limited to 107 bytes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-tvm-'));
  const consoleLog = path.join(dir, 'console.log');
  const qemuLog = path.join(dir, 'qemu.log');
  const qmpSocket = path.join(dir, 'qmp.sock');
  const privateSocket = path.join(dir, 'qmp-test.sock');
  const serialSocket = path.join(dir, 'serial.sock');
  const guestAgentSocket = options.guestAgent ? path.join(dir, 'qga.sock') : undefined;

  let child: ChildProcess | undefined;
  let serialServer: net.Server | undefined;
  let serial: net.Socket | undefined;
  let qmp: QmpClient | undefined;
  const cleanup = async (): Promise<void> => {
    await qmp?.close().catch(() => undefined);
    serial?.destroy();
    serialServer?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child?.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    const disks: Array<Omit<TestVmDisk, 'guestDevice'>> = [];
    for (const [i, d] of (options.disks ?? [16 * 1024 * 1024]).entries()) {
      const node = `disk${i}`;
      if (typeof d === 'number') {
        const file = path.join(dir, `${node}.qcow2`);
        await createQcow2(file, d);
        disks.push({ node, file, format: 'qcow2' });
      } else {
        disks.push({ node, file: path.resolve(d.file), format: d.format ?? (await probeFormat(d.file)) });
      }
    }

    // The guest's ttyS1: QEMU connects to this server as it starts, so no byte the guest sends
    // (osr-guest-ready) can be lost before the helper listens.
    const channel = new GuestChannel();
    serialServer = net.createServer((s) => {
      if (serial) return void s.destroy();
      serial = s;
      channel.attach(s);
    });
    await new Promise<void>((resolve, reject) => {
      serialServer?.once('error', reject);
      serialServer?.listen(serialSocket, resolve);
    });

    const args = [
      ...(accel === 'kvm' ? ['-accel', 'kvm', '-accel', 'tcg'] : ['-accel', 'tcg']),
      ...['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'],
      ...['-m', String(options.memoryMiB ?? 128), '-smp', '1'],
      ...['-kernel', kernel, '-initrd', initrd],
      ...['-append', `console=ttyS0 panic=-1 quiet osr.disks=${disks.length}`],
      ...['-chardev', `file,id=console,path=${consoleLog}`, '-device', 'isa-serial,chardev=console,index=0'],
      ...['-chardev', `socket,id=guest,path=${serialSocket}`, '-device', 'isa-serial,chardev=guest,index=1'],
      ...[
        '-chardev',
        `socket,id=qmp,path=${qmpSocket},server=on,wait=off`,
        '-mon',
        'chardev=qmp,mode=control',
      ],
      ...[
        '-chardev',
        `socket,id=qmptest,path=${privateSocket},server=on,wait=off`,
        '-mon',
        'chardev=qmptest,mode=control',
      ],
    ];
    if (guestAgentSocket)
      args.push(
        ...[
          '-device',
          'virtio-serial-pci,id=vser0',
          '-chardev',
          `socket,id=qga,path=${guestAgentSocket},server=on,wait=off`,
        ],
        ...['-device', 'virtserialport,bus=vser0.0,chardev=qga,name=org.qemu.guest_agent.0'],
      );
    for (const d of disks) {
      const blockdev = { driver: d.format, 'node-name': d.node, file: { driver: 'file', filename: d.file } };
      args.push('-blockdev', JSON.stringify(blockdev));
      args.push('-device', `virtio-blk-pci,drive=${d.node},id=v${d.node},serial=${d.node}`);
    }
    const logFd = fs.openSync(qemuLog, 'w');
    child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    const proc = child;
    const exited = new Promise<never>((_, reject) => {
      proc.once('error', (err) => reject(new Error(`cannot start qemu-system-x86_64: ${err.message}`)));
      proc.once('exit', (code, signal) =>
        reject(
          new Error(`qemu-system-x86_64 exited (${signal ?? `code ${code}`}) before the guest was ready`),
        ),
      );
    });
    exited.catch(() => undefined);

    const describe = (why: string): Error =>
      new Error(
        `test VM (${accel}) ${why}\n--- qemu ---\n${tailOf(qemuLog)}\n--- console (${consoleLog}) ---\n${tailOf(consoleLog)}`,
      );
    try {
      await Promise.race([
        exited,
        withTimeout(channel.ready, bootTimeoutMs, () => new Error(`not ready within ${bootTimeoutMs} ms`)),
      ]);
      qmp = await Promise.race([exited, connectQmp(privateSocket, 10_000)]);
    } catch (err) {
      throw describe((err as Error).message);
    }
    const monitor = qmp;

    // Which /dev/vd* is which disk: the guest sees each node name as its virtio serial.
    const map = await channel.run(
      'for d in /sys/block/vd*; do echo "$(cat $d/serial) ${d##*/}"; done',
      10_000,
    );
    const devices = new Map(
      map.output
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ') as [string, string]),
    );
    const vmDisks: TestVmDisk[] = disks.map((d) => {
      const dev = devices.get(d.node);
      if (!dev)
        throw describe(`guest has no virtio disk with serial ${d.node} (it has: ${map.output.trim()})`);
      return { ...d, guestDevice: `/dev/${dev}` };
    });
    const diskOf = (disk: number | string): TestVmDisk => {
      const d = typeof disk === 'number' ? vmDisks[disk] : vmDisks.find((x) => x.node === disk);
      if (!d) throw new Error(`test VM has no disk ${disk}`);
      return d;
    };

    let stopped = false;
    return {
      dir,
      qmpSocket,
      guestAgentSocket,
      disks: vmDisks,
      consoleLog,
      pid: proc.pid ?? 0,
      accel,
      run: (command, runOptions) => channel.run(command, runOptions?.timeoutMs ?? 60_000),
      async writeRecord(disk, n, text = '') {
        const d = diskOf(disk);
        const record = formatRecord(n, text);
        // One direct, synced sector write: dd returns once the virtual disk acknowledged it.
        const r = await channel.run(
          `printf '%s\\n' '${record}' | dd of=${d.guestDevice} bs=${SECTOR} seek=${n} count=1 ` +
            'iflag=fullblock oflag=direct conv=fsync,notrunc',
          60_000,
        );
        if (r.code !== 0)
          throw new Error(`writing record ${n} to ${d.node} failed (exit ${r.code}): ${r.output}`);
      },
      async readRecord(disk, n) {
        const d = diskOf(disk);
        const r = await channel.run(
          `dd if=${d.guestDevice} bs=${SECTOR} skip=${n} count=1 iflag=direct 2>/dev/null | head -c 64`,
          60_000,
        );
        if (r.code !== 0)
          throw new Error(`reading sector ${n} of ${d.node} failed (exit ${r.code}): ${r.output}`);
        return parseRecord(Buffer.from(r.output));
      },
      async pause() {
        await monitor.execute('stop');
      },
      async resume() {
        await monitor.execute('cont');
      },
      async status() {
        return (await monitor.execute<{ status: string }>('query-status')).status;
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        channel.close(new Error('test VM stopped'));
        if (proc.exitCode === null && proc.signalCode === null) {
          const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
          await monitor.execute('quit').catch(() => undefined);
          const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
          await gone;
          clearTimeout(timer);
        }
        await cleanup();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** The 512-byte sector of record `n`: `OSR-RECORD <n, 10 digits> <text>`, space padded, newline. */
export function formatRecord(n: number, text = ''): string {
  if (!Number.isSafeInteger(n) || n < 0 || n >= 10 ** RECORD_DIGITS)
    throw new Error(`bad record number ${n}`);
  if (!/^[A-Za-z0-9 ._:=-]*$/.test(text))
    throw new Error(`record text may only hold [A-Za-z0-9 ._:=-]: ${text}`);
  const line = `${RECORD_MAGIC}${String(n).padStart(RECORD_DIGITS, '0')} ${text}`;
  if (line.length > SECTOR - 1) throw new Error(`record text too long: ${text}`);
  return line.padEnd(SECTOR - 1, ' ');
}

/** The record number at the start of `sector`, or null. */
export function parseRecord(sector: Buffer): number | null {
  const head = sector.subarray(0, RECORD_MAGIC.length + RECORD_DIGITS).toString('latin1');
  if (!head.startsWith(RECORD_MAGIC)) return null;
  const digits = head.slice(RECORD_MAGIC.length);
  return /^\d+$/.test(digits) && digits.length === RECORD_DIGITS ? Number(digits) : null;
}

/** Every record in a disk's content (raw bytes), in sector order, as [sector, record] pairs. */
export function recordsIn(data: Buffer, baseOffset = 0): Array<{ sector: number; record: number }> {
  const found: Array<{ sector: number; record: number }> = [];
  for (let off = 0; off + SECTOR <= data.length; off += SECTOR) {
    if (data[off] !== 0x4f) continue; // 'O': skip the zeros quickly
    const record = parseRecord(data.subarray(off, off + SECTOR));
    if (record !== null) found.push({ sector: (baseOffset + off) / SECTOR, record });
  }
  return found;
}

/**
 * All records of a whole disk: a raw or qcow2 image file (read with `qemu-img convert -U`, so it
 * may be in use), an NBD export, or its bytes.
 */
export async function readRecords(
  source: string | NbdClient | Buffer,
): Promise<Array<{ sector: number; record: number }>> {
  if (Buffer.isBuffer(source)) return recordsIn(source);
  if (typeof source !== 'string') {
    const found: Array<{ sector: number; record: number }> = [];
    const chunk = 4 * 1024 * 1024;
    for (let off = 0; off < source.size; off += chunk) {
      found.push(...recordsIn(await source.read(off, Math.min(chunk, source.size - off)), off));
    }
    return found;
  }
  if ((await probeFormat(source)) === 'raw') return recordsIn(await fs.promises.readFile(source));
  const tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'osr-rec-'));
  try {
    const raw = path.join(tmp, 'disk.raw');
    await execFileAsync('qemu-img', ['convert', '-U', '-O', 'raw', source, raw]);
    return recordsIn(await fs.promises.readFile(raw));
  } finally {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
}

/** The highest record number on a whole disk (image file, NBD export or bytes), or null if none. */
export async function highestRecord(source: string | NbdClient | Buffer): Promise<number | null> {
  const records = await readRecords(source);
  return records.length ? Math.max(...records.map((r) => r.record)) : null;
}

// ---- internals ----

async function connectQmp(socket: string, timeoutMs: number): Promise<QmpClient> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await QmpClient.connect(socket);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

async function probeFormat(file: string): Promise<'qcow2' | 'raw'> {
  const { stdout } = await execFileAsync('qemu-img', ['info', '-U', '--output=json', file]);
  const format = (JSON.parse(stdout) as { format?: string }).format;
  if (format !== 'qcow2' && format !== 'raw') throw new Error(`${file} is ${format}, not qcow2 or raw`);
  return format;
}

function tailOf(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n') || '(empty)';
  } catch {
    return '(none)';
  }
}
