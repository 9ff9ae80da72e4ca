// The process server's view of a QEMU machine: its disks, change tracking, and frozen points in
// time, through the CBT connector over QMP. Each call opens QMP and closes it again: a process
// server holds no connection to a machine between activities.
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type {
  DiskChangeWarning,
  FrozenDisk,
  FrozenPoint,
  ProtectedMachine,
  TransferMode,
} from '../../shared/replication-types';
import { CbtConnector, bitmapGeneration, type ProtectedDisk } from '../../lib/qemu/cbt-connector';
import { QmpClient } from '../../lib/qemu/qmp-client';
import { withQuiesce } from './quiesce';

export interface SourceDeps {
  /** Folder for fleecing overlays and point-in-time manifests, per machine below it. */
  workRoot: string;
}

async function withConnector<T>(
  deps: SourceDeps,
  machine: ProtectedMachine,
  fn: (c: CbtConnector, qmp: QmpClient) => Promise<T>,
): Promise<T> {
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(machine.source.qmpSocket);
  } catch (err) {
    // A wrong or dead socket does not fix itself by retrying within the activity: fail it for good;
    // the workflow raises source-unreachable and backs off between cycles.
    throw ApplicationFailure.create({
      type: FAILURE.SourceUnreachable,
      nonRetryable: true,
      message: `machine ${machine.name}: ${(err as Error).message}`,
    });
  }
  try {
    const connector = new CbtConnector(qmp, {
      workDir: path.join(deps.workRoot, machine.name),
      nbdSocket: machine.source.nbdSocket,
    });
    return await fn(connector, qmp);
  } finally {
    await qmp.close();
  }
}

function selectDisks(machine: ProtectedMachine, disks: ProtectedDisk[]): ProtectedDisk[] {
  if (!machine.source.disks) return disks;
  const wanted = machine.source.disks;
  const missing = wanted.filter((w) => !disks.some((d) => d.node === w));
  if (missing.length) {
    throw ApplicationFailure.create({
      type: FAILURE.SourceError,
      nonRetryable: true,
      message: `machine ${machine.name} has no disk ${missing.join(', ')}; it has ${disks.map((d) => d.node).join(', ') || 'none'}. Fix the --disks list.`,
    });
  }
  return disks.filter((d) => wanted.includes(d.node));
}

export async function discoverDisks(deps: SourceDeps, machine: ProtectedMachine) {
  return withConnector(deps, machine, async (c) => {
    const disks = selectDisks(machine, await c.listDisks());
    if (disks.length === 0) {
      throw ApplicationFailure.create({
        type: FAILURE.SourceError,
        nonRetryable: true,
        message: `machine ${machine.name} (QMP ${machine.source.qmpSocket}) shows no qcow2 or raw disk to protect`,
      });
    }
    return {
      disks: disks.map((d) => ({
        diskId: d.node,
        sizeBytes: d.size,
        format: d.format,
        tracked: d.tracking !== null,
      })),
    };
  });
}

export async function enableTracking(deps: SourceDeps, machine: ProtectedMachine, diskIds: string[]) {
  return withConnector(deps, machine, async (c) => {
    const volatileDisks: string[] = [];
    for (const diskId of diskIds) {
      const enabled = await c.enableTracking(diskId);
      if (!enabled.persistent) volatileDisks.push(diskId);
    }
    return { volatileDisks };
  });
}

export interface FreezeInput {
  machine: ProtectedMachine;
  cycle: number;
  /** What the workflow wants sent per known disk; disks found beyond these are new. */
  modes: Record<string, TransferMode>;
  /** Known sizes, to tell growth (followed) from shrinking (refused). */
  sizes?: Record<string, number>;
  quiesce: boolean;
}

export function pitIdOf(machine: string, cycle: number): string {
  return `${machine}-c${cycle}`;
}

export async function freezePoint(deps: SourceDeps, input: FreezeInput): Promise<FrozenPoint> {
  const { machine } = input;
  return withConnector(deps, machine, async (c) => {
    const warnings: DiskChangeWarning[] = [];
    const found = selectDisks(machine, await c.listDisks());
    const plan: Array<{ disk: ProtectedDisk; mode: TransferMode }> = [];
    for (const [diskId, mode] of Object.entries(input.modes)) {
      const disk = found.find((d) => d.node === diskId);
      if (!disk) {
        warnings.push({
          kind: 'disk-vanished',
          diskId,
          message: `${diskId} vanished from machine ${machine.name}: its replica is kept but no longer updated. If it was removed on purpose, unprotect and protect the machine again; otherwise attach it back.`,
        });
        continue;
      }
      const known = input.sizes?.[diskId];
      if (known !== undefined && disk.size < known) {
        warnings.push({
          kind: 'disk-shrunk',
          diskId,
          message: `${diskId} shrank from ${known} to ${disk.size} bytes: OSR cannot follow a shrink and stopped replicating it. Grow it back, or unprotect and protect the machine again to start over at the new size.`,
        });
        continue;
      }
      plan.push({ disk, mode });
    }
    for (const disk of found) {
      if (!(disk.node in input.modes)) {
        warnings.push({
          kind: 'disk-added',
          diskId: disk.node,
          message: `${disk.node} was added to machine ${machine.name}: it gets its own initial sync`,
        });
        plan.push({ disk, mode: 'full' });
      }
    }
    if (plan.length === 0) {
      throw ApplicationFailure.create({
        type: FAILURE.SourceError,
        nonRetryable: false,
        message: `machine ${machine.name} has no disk left to replicate`,
      });
    }
    for (const p of plan) {
      if (p.disk.tracking) continue;
      // No recording bitmap: a restart of the QEMU process lost it (raw disk) or it never existed.
      await c.enableTracking(p.disk.node);
      if (p.mode === 'delta') {
        warnings.push({
          kind: 'resync-needed',
          diskId: p.disk.node,
          message: `tracking lost on ${p.disk.node} (no OSR dirty bitmap: the VM or storage daemon restarted with a raw disk, or the bitmap was removed): resynchronizing by checksums`,
        });
        p.mode = 'resync';
      }
    }
    plan.sort((a, b) => a.disk.node.localeCompare(b.disk.node, 'en', { numeric: true }));
    const pitId = pitIdOf(machine.name, input.cycle);
    const nodes = plan.map((p) => p.disk.node);
    const view = await withQuiesce(input.quiesce ? machine.quiesce : undefined, machine.name, () =>
      c.freeze(nodes, pitId),
    );
    const disks: FrozenDisk[] = view.disks.map((d) => ({
      diskId: d.node,
      sizeBytes: d.size,
      exportName: d.exportName,
      nbdSocket: d.nbdSocket,
      bitmap: d.bitmap,
      mode: plan.find((p) => p.disk.node === d.node)?.mode ?? 'full',
    }));
    return { pitId, machine: machine.name, cycle: input.cycle, instant: view.instant, disks, warnings };
  });
}

export async function releasePoint(
  deps: SourceDeps,
  machine: ProtectedMachine,
  pitId: string,
  success: boolean,
) {
  return withConnector(deps, machine, async (c) => {
    const result = await c.release(pitId, { success });
    return { released: result.released, fullSyncRequired: result.fullSyncRequired };
  });
}

/** Ends protection at the source: releases frozen points and removes OSR's dirty bitmaps. */
export async function disableTracking(deps: SourceDeps, machine: ProtectedMachine) {
  return withConnector(deps, machine, async (c, qmp) => {
    for (const pitId of await c.listFrozen()) await c.release(pitId, { success: false });
    for (const disk of await c.listDisks()) {
      const nodes = await qmp.execute<
        Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name: string }> }>
      >('query-named-block-nodes', { flat: true });
      const bitmaps = nodes.find((n) => n['node-name'] === disk.node)?.['dirty-bitmaps'] ?? [];
      for (const b of bitmaps) {
        if (bitmapGeneration(b.name) !== null)
          await qmp.execute('block-dirty-bitmap-remove', { node: disk.node, name: b.name });
      }
    }
  });
}
