// What the failback tests (failback*.test.ts) share: a testbed with a master target, and a
// machine protected, failed over (planned), committed and materialized in the recovery site.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before } from 'node:test';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { stopStorageDaemon } from '../../lib/qemu/storage-daemon';
import type { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { waitForStatus } from './protection';
import { pseudoRandom, startTestMachine, type TestMachine } from './qemu-machine';
import { startTestbed, type Testbed } from './testbed';
import { pollFor } from './poll';

export const MiB = 1024 * 1024;
export const BLOCK = 64 * 1024;
export const DISK = 64 * MiB;
export let bed: Testbed;
export let ctx: ControlContext;
export const vms: TestMachine[] = [];
export const conns: NbdClient[] = [];
/** Folders of the recovery-site copies (detached storage daemons, stopped at the end). */
export const recoveredDirs: string[] = [];

/** Bytes in 64 KiB blocks that differ between two images (what a checksum resync must send). */
export function differingBytes(a: Buffer, b: Buffer): number {
  let n = 0;
  for (let off = 0; off < a.length; off += BLOCK)
    if (!a.subarray(off, off + BLOCK).equals(b.subarray(off, off + BLOCK)))
      n += Math.min(BLOCK, a.length - off);
  return n;
}

/** Incompressible data; seeds must differ after `| 1` (pseudoRandom's xorshift), or zstd finds repeats. */
export async function write(nbd: NbdClient, offset: number, length: number, seed: number): Promise<void> {
  await nbd.write(offset, pseudoRandom(length, seed));
  await nbd.flush();
}

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 180_000,
): Promise<T> {
  return pollFor(probe, {
    timeoutMs,
    intervalMs: 200,
    failure: (last) => new Error(`timed out waiting for ${what} ${String(last ?? '')}`),
  });
}

/** A protected machine, failed over (planned), committed and materialized in the recovery site. */
export async function failedOverMachine(name: string, writeA: (disk: NbdClient) => Promise<void>) {
  const vm = await startTestMachine({ sizes: [DISK] });
  vms.push(vm);
  const marker = path.join(vm.dir, 'writers-stopped');
  await machines.protect(ctx, {
    name,
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
    quiesce: { pre: `touch ${marker}`, post: `rm -f ${marker}` },
  });
  await failover.configureRecovery(ctx, name, { materialize: { format: 'qcow2' } });
  await waitForStatus(ctx, name, (s) => s.state === 'protected');
  const primary = await vm.disk();
  await writeA(primary);
  const { status } = await failover.startFailover(ctx, name, { planned: true });
  assert.equal(status?.state, 'failed-over');
  assert.ok(fs.existsSync(marker), 'the source writers were told to stop');
  const committed = await failover.commitFailover(ctx, name);
  assert.equal(committed.state, 'committed');
  const materialized = status?.materialized;
  assert.ok(materialized, 'the failed-over machine runs in the recovery site');
  recoveredDirs.push(materialized.dir);
  const recovery = await NbdClient.connect({ socket: materialized.nbdSocket, exportName: 'disk0' });
  conns.push(recovery);
  return { vm, primary, recovery, marker };
}

/** A testbed with a master target for the file's tests; machines, connections and recovery-site copies stopped after them. */
export function useFailbackStack(): void {
  before(async () => {
    bed = await startTestbed();
    ctx = bed.ctx;
    await bed.stack.startWorker('master-target');
  });
  after(async () => {
    for (const c of conns) await c.close().catch(() => undefined);
    for (const vm of vms) await vm.stop().catch(() => undefined);
    for (const dir of recoveredDirs) await stopStorageDaemon(dir).catch(() => undefined);
    await bed?.stop();
  });
}
