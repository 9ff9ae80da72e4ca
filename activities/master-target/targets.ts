// The master target's disks: the failed-back machine's ORIGINAL disks in the primary site, reached
// through the QEMU process that serves them (a VM or a qemu-storage-daemon; its source stopped
// writing at the planned failover). Each disk gets a writable NBD export of its own
// (`osrmt-<node>`), so the master target never depends on the machine's own exports. When the
// original machine is gone (no QMP, or a disk missing or smaller), new qcow2 disks are created
// under the state folder and served by a qemu-storage-daemon the master target starts: reprotect
// then copies everything into them (a full copy), and they become the machine's disks. A libvirt
// domain's disks are its image files, served while it is off (libvirt-targets.ts). A machine with
// the Mobility agent has its disks inside it: its agent writes them (target-disks.ts).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type { FailbackTarget, FailbackTargetDisk } from '../../shared/failback-types';
import type { ProtectedMachine } from '../../shared/replication-types';
import { CbtConnector } from '../../lib/qemu/cbt-connector';
import { QmpClient } from '../../lib/qemu/qmp-client';
import {
  NbdServerUnusableError,
  addWritableExports,
  ensureNbdServerIn,
  removeExports as removeWritableExports,
} from '../../lib/qemu/writable-exports';
import {
  createQcow2,
  runningStorageDaemon,
  startStorageDaemon,
  storageDaemonPaths,
} from '../../lib/qemu/storage-daemon';
import { assertId } from '../../lib/azure/page-blobs';
import { serveOriginalDomain } from './libvirt-targets';
import { closeAgentDisks, openAgentDisks } from '../../lib/agents/agent-target-disk';
import { agentCall } from './target-disks';

export const EXPORT_PREFIX = 'osrmt-';

export interface PrepareTargetsInput {
  machine: ProtectedMachine;
  /** The disks the recovery site serves (ids of the original machine) and their sizes. */
  disks: Array<{ diskId: string; sizeBytes: number }>;
}

export interface TargetDeps {
  /** Per-machine folders of the master target (new disks, its NBD server socket). */
  workRoot: string;
}

/** Folder of the disks the master target creates when the original machine is gone. */
export function newDisksDir(deps: TargetDeps, machine: string): string {
  assertId('machine', machine);
  return path.join(deps.workRoot, machine);
}

export async function prepareTargets(deps: TargetDeps, input: PrepareTargetsInput): Promise<FailbackTarget> {
  const { machine } = input;
  if (machine.source.type === 'agent') return agentTargets(machine.source.agentId, input);
  const source = machine.source;
  const created = await existingCreated(deps, machine.name);
  if (created) return exportAll(deps, input, created.qmpSocket, created.nbdSocket, false, created.dir);
  if (source.type === 'libvirt') {
    const original = await serveOriginalDomain(
      newDisksDir(deps, machine.name),
      machine.name,
      source,
      input.disks,
    );
    if (original.usable) {
      const target = await exportAll(deps, input, original.qmpSocket, original.nbdSocket, true, undefined, {
        nodes: original.nodes,
      });
      return {
        ...target,
        libvirt: { uri: source.uri, domain: source.domain, daemonDir: original.daemonDir },
      };
    }
    return createNewDisks(deps, input);
  }
  let qmp: QmpClient | undefined;
  try {
    qmp = await QmpClient.connect(source.qmpSocket, { greetingTimeoutMs: 10_000 });
  } catch {
    qmp = undefined;
  }
  if (qmp) {
    let usable = false;
    try {
      const disks = await new CbtConnector(qmp, {
        workDir: newDisksDir(deps, machine.name),
        nbdSocket: source.nbdSocket,
      }).listDisks();
      usable = input.disks.every((want) =>
        disks.some((d) => d.node === want.diskId && d.size >= want.sizeBytes),
      );
    } finally {
      // A QMP socket takes one client at a time: close before exportAll opens its own.
      await qmp.close();
    }
    if (usable) return exportAll(deps, input, source.qmpSocket, source.nbdSocket, true);
  }
  return createNewDisks(deps, input);
}

/**
 * The original machine runs the Mobility agent: its own disks, opened by the agent once nothing on
 * the machine uses them (agent/failback-target.ts), and resynced by checksums. A disk missing or
 * smaller than the recovery-site copy is refused: the agent writes disks, it makes none.
 */
async function agentTargets(agentId: string, input: PrepareTargetsInput): Promise<FailbackTarget> {
  const opened = await agentCall(() =>
    openAgentDisks(
      agentId,
      input.disks.map((d) => d.diskId),
    ),
  );
  const disks: FailbackTargetDisk[] = input.disks.map((want) => {
    const have = opened.find((o) => o.disk === want.diskId);
    if (!have || have.sizeBytes < want.sizeBytes)
      throw ApplicationFailure.create({
        type: FAILURE.SourceError,
        nonRetryable: true,
        message: `${input.machine.name}'s disk ${want.diskId} is ${have ? `${have.sizeBytes} bytes, smaller than the recovery-site copy's ${want.sizeBytes}` : 'not there'}: give the machine a disk of at least ${want.sizeBytes} bytes named ${want.diskId}, or keep running in the recovery site`,
      });
    return { diskId: want.diskId, node: want.diskId, sizeBytes: want.sizeBytes, agentId, existed: true };
  });
  return { disks, agent: { agentId } };
}

/** The original disks are gone: new ones, copied in full. */
async function createNewDisks(deps: TargetDeps, input: PrepareTargetsInput): Promise<FailbackTarget> {
  const { machine } = input;
  const dir = newDisksDir(deps, machine.name);
  await fs.mkdir(dir, { recursive: true });
  const images = [];
  for (const d of input.disks) {
    const file = path.join(dir, `${d.diskId}.qcow2`);
    await fs.rm(file, { force: true });
    await createQcow2(file, d.sizeBytes);
    images.push({ path: file, format: 'qcow2' as const });
  }
  const daemon = await startStorageDaemon({ stateDir: dir, images, detached: true });
  // The daemon names its nodes disk0, disk1 … in order; exportAll maps them back to the disk ids.
  return exportAll(deps, input, daemon.qmpSocket, daemon.nbdSocket, false, dir);
}

/** A daemon this master target started earlier for the machine (a retried attempt reuses it). */
async function existingCreated(
  deps: TargetDeps,
  machine: string,
): Promise<{ dir: string; qmpSocket: string; nbdSocket: string } | undefined> {
  const dir = newDisksDir(deps, machine);
  if ((await runningStorageDaemon(dir)) === undefined) return undefined;
  const paths = storageDaemonPaths(dir);
  return { dir, qmpSocket: paths.qmpSocket, nbdSocket: paths.nbdSocket };
}

async function exportAll(
  deps: TargetDeps,
  input: PrepareTargetsInput,
  qmpSocket: string,
  nbdSocket: string | undefined,
  existed: boolean,
  createdDir?: string,
  served?: { nodes: string[] },
): Promise<FailbackTarget> {
  const qmp = await QmpClient.connect(qmpSocket, { greetingTimeoutMs: 10_000 });
  try {
    const socket =
      nbdSocket ??
      (await ensureNbdServerIn(qmp, newDisksDir(deps, input.machine.name), 'mt-nbd.sock').catch(
        (err: unknown) => {
          if (err instanceof NbdServerUnusableError) throw ApplicationFailure.nonRetryable(err.message);
          throw err;
        },
      ));
    // A daemon the master target starts names its nodes disk0, disk1 … in order.
    const nodes = served?.nodes ?? input.disks.map((d, i) => (createdDir ? `disk${i}` : d.diskId));
    const names = await addWritableExports(qmp, nodes, EXPORT_PREFIX);
    const disks: FailbackTargetDisk[] = input.disks.map((d, i) => ({
      diskId: d.diskId,
      node: nodes[i]!,
      sizeBytes: d.sizeBytes,
      exportName: names[i]!,
      nbdSocket: socket,
      existed,
    }));
    return { qmpSocket, nbdSocket: socket, disks, ...(createdDir ? { createdDir } : {}) };
  } finally {
    await qmp.close();
  }
}

/**
 * Removes the master target's exports of the disks (failback done, or reprotect stopped); an agent
 * machine's agent closes the disks it opened.
 */
export async function removeExports(target: FailbackTarget): Promise<number> {
  if (target.agent) return agentCall(() => closeAgentDisks(target.agent!.agentId));
  if (!target.qmpSocket) throw new Error('a failback target with neither QMP nor an agent');
  const qmp = await QmpClient.connect(target.qmpSocket, { greetingTimeoutMs: 10_000 });
  try {
    return await removeWritableExports(
      qmp,
      target.disks.map((d) => d.exportName ?? ''),
    );
  } finally {
    await qmp.close();
  }
}
