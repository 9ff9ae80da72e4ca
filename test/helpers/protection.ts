// Helpers for replication tests: wait for a machine's state, export a point, compare images.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exportPoint } from '../../activities/cloud-applier/export-point';
import type { ControlContext } from '../../operations/context';
import { machineStatus } from '../../operations/machines';
import type { FrozenPoint, RecoveryPoint } from '../../shared/replication-types';
import type { MachineStatus } from '../../shared/contracts/protect-machine';

export async function waitForStatus(
  ctx: ControlContext,
  machine: string,
  until: (s: MachineStatus) => boolean,
  timeoutMs = 120_000,
): Promise<MachineStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: MachineStatus | undefined;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      last = await machineStatus(ctx, machine);
      if (until(last)) return last;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(
    `timed out waiting on ${machine}; last status ${JSON.stringify(last)} ${String(lastError ?? '')}`,
  );
}

/** The point's image of one disk, read back from storage as `osr export` writes it. */
export async function exportedImage(
  ctx: ControlContext,
  point: RecoveryPoint,
  diskId = 'disk0',
): Promise<Buffer> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'osr-export-')), `${diskId}.raw`);
  try {
    await exportPoint(ctx, { point, diskId, outFile: file });
    return fs.readFileSync(file);
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}

/** Asserts two disk images are equal, naming the first differing 64 KiB block if not. */
export function assertSameImage(actual: Buffer, expected: Buffer, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: size`);
  if (actual.equals(expected)) return;
  const block = 65536;
  for (let off = 0; off < expected.length; off += block) {
    if (!actual.subarray(off, off + block).equals(expected.subarray(off, off + block))) {
      assert.fail(`${what}: differs from the source in the 64 KiB block at offset ${off}`);
    }
  }
}

export async function pointById(ctx: ControlContext, machine: string, id: string): Promise<RecoveryPoint> {
  const point = (await ctx.vault.points(machine)).find((p) => p.id === id);
  assert.ok(point, `point ${id} of ${machine} is in the catalog`);
  return point;
}

/** The freezes a workflow recorded (freezePoint results in its history): the mode of each disk. */
export async function recordedFreezes(ctx: ControlContext, workflowId: string): Promise<FrozenPoint[]> {
  const history = await (await ctx.client()).workflow.getHandle(workflowId).fetchHistory();
  const out: FrozenPoint[] = [];
  for (const e of history.events ?? [])
    for (const p of e.activityTaskCompletedEventAttributes?.result?.payloads ?? []) {
      const value = JSON.parse(Buffer.from(p.data ?? []).toString('utf8') || 'null') as FrozenPoint | null;
      if (value && typeof value === 'object' && 'pitId' in value && 'warnings' in value) out.push(value);
    }
  return out;
}
