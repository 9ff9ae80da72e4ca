// A test machine: qemu-storage-daemon serving qcow2 disks in a temp folder, with helpers to write
// to them through their writable NBD exports and to read them back whole.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { createQcow2, startStorageDaemon, type StorageDaemon } from '../../lib/qemu/storage-daemon';
import type { ProtectedMachine } from '../../shared/replication-types';

export interface TestMachine {
  dir: string;
  daemon: StorageDaemon;
  /** A writable NBD connection to disk `i` (opened once, reused). */
  disk(i?: number): Promise<NbdClient>;
  /** The whole disk as it is now. */
  readAll(i?: number): Promise<Buffer>;
  stop(): Promise<void>;
}

export async function startTestMachine(options: { sizes: number[] }): Promise<TestMachine> {
  // Short paths: unix socket paths are limited to 107 bytes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-vm-'));
  const images = [];
  for (const [i, size] of options.sizes.entries()) {
    const file = path.join(dir, `disk${i}.qcow2`);
    await createQcow2(file, size);
    images.push(file);
  }
  const daemon = await startStorageDaemon({ stateDir: dir, images });
  const conns = new Map<number, NbdClient>();
  const disk = async (i = 0) => {
    let c = conns.get(i);
    if (!c) {
      c = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: `disk${i}` });
      conns.set(i, c);
    }
    return c;
  };
  return {
    dir,
    daemon,
    disk,
    async readAll(i = 0) {
      const c = await disk(i);
      return c.read(0, c.size);
    },
    async stop() {
      for (const c of conns.values()) await c.close().catch(() => undefined);
      await daemon.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function pseudoRandom(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  let x = seed | 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeInt32LE(x | 0, i);
  }
  return buf;
}

export function textLike(length: number): Buffer {
  const line = Buffer.from('2026-11-25T06:00:00Z osr test: a log line that compresses well, over and over\n');
  const buf = Buffer.alloc(length);
  for (let i = 0; i < length; i += line.length) line.copy(buf, i);
  return buf;
}

/** The registration a test machine gets when protected (source: its storage daemon's QMP). */
export function machineOf(vm: TestMachine, name: string): ProtectedMachine {
  return {
    name,
    site: 'primary',
    source: { type: 'qemu', qmpSocket: vm.daemon.qmpSocket },
    policy: 'default',
    createdAt: new Date().toISOString(),
  };
}
