// One delta cycle after scattered change: what it sends against the zstd level 1 size of the
// changed bytes (the least a compressing replicator could send), and how long it takes.
import { compress } from 'zstd-napi';
import type { NbdClient } from '../lib/qemu/nbd-client';
import * as machines from '../operations/machines';
import type { ControlContext } from '../operations/context';
import { protectWorkflowId } from '../shared/contracts/protect-machine';
import { scatteredChange } from './disk-data';
import { activitySpans, formatPhases, phases } from './history';
import { secondsSince, sleep } from './harness';

export interface DeltaCycle {
  machine: string;
  diskBytes: number;
  /** Bytes the workload changed. */
  changedBytes: number;
  /** zstd level 1 of the changed blocks, one frame, in disk order. */
  referenceBytes: number;
  /** stats.bytesSent / bytesChanged of the machine grew by these. */
  sentBytes: number;
  bytesChanged: number;
  /** From the takePoint request until the point is published. */
  seconds: number;
  phases: string;
}

/**
 * Waits until the workflow runs no activity: the previous cycle's housekeeping (segment deletes,
 * retention) must not be counted in the next cycle's time.
 */
export async function waitIdle(ctx: ControlContext, machine: string, timeoutMs = 120_000): Promise<void> {
  const handle = (await ctx.client()).workflow.getHandle(protectWorkflowId(machine));
  const deadline = performance.now() + timeoutMs;
  let quiet = 0;
  while (quiet < 2) {
    if (performance.now() > deadline)
      throw new Error(`${machine} still runs activities after ${timeoutMs / 1000} s`);
    const pending = (await handle.describe()).raw.pendingActivities?.length ?? 0;
    quiet = pending === 0 ? quiet + 1 : 0;
    await sleep(200);
  }
}

export async function deltaCycle(
  ctx: ControlContext,
  machine: string,
  nbd: NbdClient,
  changeBytes: number,
  seed: number,
): Promise<DeltaCycle> {
  await waitIdle(ctx, machine);
  const before = await machines.machineStatus(ctx, machine);
  const change = await scatteredChange(nbd, nbd.size, changeBytes, seed);
  const referenceBytes = compress(change.data, { compressionLevel: 1 }).length;
  const fromWall = Date.now();
  const start = performance.now();
  await machines.takePoint(ctx, machine, { kind: 'crash', tag: `bench-delta-${seed}` });
  const seconds = secondsSince(start);
  const after = await machines.machineStatus(ctx, machine);
  const spans = await activitySpans(await ctx.client(), machine);
  return {
    machine,
    diskBytes: nbd.size,
    changedBytes: change.bytes,
    referenceBytes,
    sentBytes: after.stats.bytesSent - before.stats.bytesSent,
    bytesChanged: after.stats.bytesChanged - before.stats.bytesChanged,
    seconds,
    phases: formatPhases(phases(spans, fromWall - 200, Date.now())),
  };
}
