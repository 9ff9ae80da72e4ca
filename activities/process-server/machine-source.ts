// The process server's view of a source machine: its disks, change tracking, and frozen points in
// time, through the machine's source connector (activities/process-server/source.ts picks it).
// Each call opens a session and closes it again: a process server holds no connection to a
// machine between activities.
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import { pitIdOf } from '../../shared/pit-id';
import type {
  DiskChangeWarning,
  FrozenDisk,
  FrozenPoint,
  ProtectedMachine,
  TransferMode,
} from '../../shared/replication-types';
import {
  SourceSetupError,
  SourceUnreachableError,
  type SourceConnector,
  type SourceDisk,
} from '../../lib/sources/source-connector';
import { noteKeptPoint } from '../../lib/observability/state-disk';
import { asQuiesceFailed } from './quiesce';
import { withSource } from './source';

export interface SourceDeps {
  /** Folder for fleecing overlays and point-in-time manifests, per machine below it. */
  workRoot: string;
}

function withConnector<T>(
  deps: SourceDeps,
  machine: ProtectedMachine,
  fn: (c: SourceConnector) => Promise<T>,
): Promise<T> {
  // A wrong or dead socket (or a libvirt domain that is shut off) does not fix itself by retrying
  // within the activity: fail it for good; the workflow raises source-unreachable and backs off
  // between cycles.
  const unreachable = (err: Error) =>
    ApplicationFailure.create({
      type: FAILURE.SourceUnreachable,
      nonRetryable: true,
      message: `machine ${machine.name}: ${err.message}`,
    });
  // A source set up so that OSR cannot work with it waits for the operator: say the fix at once.
  const misconfigured = (err: Error) =>
    ApplicationFailure.create({ type: FAILURE.SourceError, nonRetryable: true, message: err.message });
  return withSource(
    machine,
    (c) =>
      fn(c).catch((err: unknown) => {
        if (err instanceof SourceUnreachableError) throw unreachable(err);
        throw err instanceof SourceSetupError ? misconfigured(err) : err;
      }),
    { workDir: path.join(deps.workRoot, machine.name), onUnreachable: unreachable },
  );
}

/** Where a machine's disks are, for messages. */
function describeSource(source: ProtectedMachine['source']): string {
  if (source.type === 'agent') return `agent ${source.agentId}`;
  return source.type === 'libvirt'
    ? `libvirt domain ${source.domain} at ${source.uri}`
    : `QMP ${source.qmpSocket}`;
}

function selectDisks(machine: ProtectedMachine, disks: SourceDisk[]): SourceDisk[] {
  if (!machine.source.disks) return disks;
  const wanted = machine.source.disks;
  const missing = wanted.filter((w) => !disks.some((d) => d.diskId === w));
  if (missing.length) {
    throw ApplicationFailure.create({
      type: FAILURE.SourceError,
      nonRetryable: true,
      message: `machine ${machine.name} has no disk ${missing.join(', ')}; it has ${disks.map((d) => d.diskId).join(', ') || 'none'}. Fix the --disks list.`,
    });
  }
  return disks.filter((d) => wanted.includes(d.diskId));
}

export async function discoverDisks(deps: SourceDeps, machine: ProtectedMachine) {
  return withConnector(deps, machine, async (c) => {
    const disks = selectDisks(machine, await c.discoverDisks());
    if (disks.length === 0) {
      throw ApplicationFailure.create({
        type: FAILURE.SourceError,
        nonRetryable: true,
        message: `machine ${machine.name} (${describeSource(machine.source)}) shows no qcow2 or raw disk to protect`,
      });
    }
    return {
      disks: disks.map((d) => ({
        diskId: d.diskId,
        sizeBytes: d.sizeBytes,
        format: d.format,
        tracked: d.tracked,
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

export async function freezePoint(deps: SourceDeps, input: FreezeInput): Promise<FrozenPoint> {
  const { machine } = input;
  return withConnector(deps, machine, async (c) => {
    const warnings: DiskChangeWarning[] = [];
    const found = selectDisks(machine, await c.discoverDisks());
    const plan: Array<{ disk: SourceDisk; mode: TransferMode }> = [];
    for (const [diskId, mode] of Object.entries(input.modes)) {
      const disk = found.find((d) => d.diskId === diskId);
      if (!disk) {
        warnings.push({
          kind: 'disk-vanished',
          diskId,
          message: `${diskId} vanished from machine ${machine.name}: its replica is kept but no longer updated. If it was removed on purpose, unprotect and protect the machine again; otherwise attach it back.`,
        });
        continue;
      }
      const known = input.sizes?.[diskId];
      if (known !== undefined && disk.sizeBytes < known) {
        warnings.push({
          kind: 'disk-shrunk',
          diskId,
          message: `${diskId} shrank from ${known} to ${disk.sizeBytes} bytes: OSR cannot follow a shrink and stopped replicating it. Grow it back, or unprotect and protect the machine again to start over at the new size.`,
        });
        continue;
      }
      plan.push({ disk, mode });
    }
    for (const disk of found) {
      if (!(disk.diskId in input.modes)) {
        warnings.push({
          kind: 'disk-added',
          diskId: disk.diskId,
          message: `${disk.diskId} was added to machine ${machine.name}: it gets its own initial sync`,
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
      if (p.disk.tracked) continue;
      // No recording bitmap: a restart of the QEMU process lost it (raw disk) or it never existed;
      // or the agent's log cannot be trusted (the machine crashed), in the source's own words.
      const enabled = await c.enableTracking(p.disk.diskId);
      if (p.mode === 'delta') {
        const why =
          enabled.trackingLost ??
          'no OSR dirty bitmap: the VM or storage daemon restarted with a raw disk, or the bitmap was removed';
        warnings.push({
          kind: 'resync-needed',
          diskId: p.disk.diskId,
          message: `tracking lost on ${p.disk.diskId} of machine ${machine.name} (${why}): resynchronizing by checksums`,
        });
        p.mode = 'resync';
      }
    }
    plan.sort((a, b) => a.disk.diskId.localeCompare(b.disk.diskId, 'en', { numeric: true }));
    const pitId = pitIdOf(machine.name, input.cycle);
    const diskIds = plan.map((p) => p.disk.diskId);
    const view = await c.freeze(diskIds, pitId, { quiesce: input.quiesce }).catch(asQuiesceFailed);
    const disks: FrozenDisk[] = view.disks.map((d) => ({
      diskId: d.diskId,
      sizeBytes: d.sizeBytes,
      exportName: d.exportName,
      nbdSocket: d.nbdSocket,
      ...(d.nbdSocketHost ? { nbdSocketHost: d.nbdSocketHost } : {}),
      bitmap: d.bitmap,
      ...(d.agentId ? { agentId: d.agentId } : {}),
      mode: plan.find((p) => p.disk.diskId === d.diskId)?.mode ?? 'full',
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
    if (success) noteKeptPoint(machine.name);
    return { released: result.released, fullSyncRequired: result.fullSyncRequired };
  });
}

/** Ends protection at the source: releases frozen points and removes what tracking left there. */
export async function disableTracking(deps: SourceDeps, machine: ProtectedMachine) {
  return withConnector(deps, machine, (c) => c.disableTracking());
}
