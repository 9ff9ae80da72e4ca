// The one place that builds and takes down the fleecing graph of a frozen disk:
//
//   writer (a guest device, or the storage daemon's osrio- filter)
//     |                                                        snapshot-access (…a): what the
//   copy-before-write (…c) --target--> qcow2 overlay (…)       NBD export reads, the disk as
//     |                                in the state folder     at the freeze, through the filter
//   disk (the protected node, with its bitmaps)
//
// on-cbw-error=break-snapshot: when the old data of a write cannot be copied into the overlay
// (the process server's state disk is full, or the copy takes longer than cbw-timeout), QEMU lets
// the guest's write go on and gives the point up (reads of it fail). The point's moment is when
// the writers move onto the filter; all of a point's moves happen with the guest's I/O drained.
//
// QEMU 7.2 cannot insert a filter above a node by itself: the writers are moved, a device with
// qom-set on its `drive`, OSR's filter node with blockdev-reopen. A disk with another writer (a
// storage daemon started before OSR added its filter, an export of someone else) keeps QEMU's
// backup-job fleecing, which fails the guest's write when the copy fails.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Manifest, ManifestDisk } from './cbt-point-state';
import { QmpError, type QmpClient } from './qmp-client';
import { runState } from './run-state';
import { withMarkedPause } from './switch-pause';

const execFileAsync = promisify(execFile);

/** Every node of a frozen point is named `osrfl-<key>-<disk index>`, with a suffix for the filters. */
export const OVERLAY_PREFIX = 'osrfl-';

/** The filter node OSR's storage daemons put above each disk, so that its writer can be moved. */
export const IO_FILTER_PREFIX = 'osrio-';
export const IO_THROTTLE_GROUP = 'osrio';
/** A copy taking longer than this gives the point up rather than stalling the guest's write. */
export const CBW_TIMEOUT_SECONDS = 10;

export interface BlockGraph {
  nodes: { id: number; type: string; name: string }[];
  edges: { parent: number; child: number; name: string }[];
}

export type Writer = { kind: 'device'; qdev: string } | { kind: 'io-filter'; node: string };

export interface FleecingNodes {
  disk: string;
  overlayNode: string;
  cbwNode: string;
  accessNode: string;
}

export const cbwNodeOf = (overlayNode: string): string => `${overlayNode}c`;
export const accessNodeOf = (overlayNode: string): string => `${overlayNode}a`;

/**
 * Builds the fleecing graph of every disk of a point and switches its bitmaps. Filtered disks:
 * the next bitmap starts recording before the writers move (the point's moment) and the frozen
 * one stops after, so each write is in one bitmap or both, never in neither. Disks fleeced by a
 * backup job switch in its transaction.
 */
export async function buildFleecing(
  qmp: QmpClient,
  manifest: Manifest,
  hooks: {
    persistent: (d: ManifestDisk) => Promise<boolean>;
    atInstant: () => Promise<void>;
    /** Marks a VM paused for the switch (switch-pause.ts). */
    pauseMarker: string;
  },
): Promise<void> {
  const { disks } = manifest;
  for (const d of disks) {
    await createOverlayFile(d.overlayFile, d.size);
    await qmp.execute('blockdev-add', {
      driver: 'qcow2',
      'node-name': d.overlayNode,
      file: { driver: 'file', filename: d.overlayFile },
      // The backup job reads unchanged data through the overlay's backing; the filter does not.
      ...(d.cbwNode ? {} : { backing: d.node }),
    });
    if (d.cbwNode) await addFilter(qmp, nodesOf(d));
  }
  const filtered = disks.filter((d) => d.cbwNode);
  const moves: { writers: Writer[]; to: string }[] = [];
  for (const d of filtered) {
    const writers = await writersOf(qmp, d.node, [d.cbwNode as string]);
    if (!writers) throw new Error(`disk ${d.node} got a writer OSR cannot move during the freeze: try again`);
    moves.push({ writers, to: d.cbwNode as string });
  }
  const start: unknown[] = [];
  const stop: unknown[] = [];
  for (const d of disks) {
    const persistent = await hooks.persistent(d);
    start.push({
      type: 'block-dirty-bitmap-add',
      data: { node: d.node, name: d.nextBitmap, persistent, granularity: d.granularity },
    });
    stop.push({ type: 'block-dirty-bitmap-disable', data: { node: d.node, name: d.bitmap } });
    if (!d.cbwNode)
      stop.push({
        type: 'blockdev-backup',
        data: { device: d.node, target: d.overlayNode, sync: 'none', 'job-id': d.jobId },
      });
  }
  await hooks.atInstant();
  if (filtered.length === 0) {
    await qmp.execute('transaction', { actions: [...start, ...stop] });
    return;
  }
  await qmp.execute('transaction', { actions: start });
  await moveWriters(qmp, moves, hooks.pauseMarker);
  await qmp.execute('transaction', { actions: stop });
  for (const d of filtered) await addAccess(qmp, nodesOf(d));
}

/** After the writers moved: the frozen bitmaps stop and the views exist (both idempotent). */
export async function finishFleecing(qmp: QmpClient, manifest: Manifest): Promise<void> {
  const filtered = manifest.disks.filter((d) => d.cbwNode);
  if (filtered.length === 0) return;
  const nodes = await qmp.execute<
    { 'node-name': string; 'dirty-bitmaps'?: { name?: string; recording: boolean }[] }[]
  >('query-named-block-nodes', { flat: true });
  const has = (name: string) => nodes.some((n) => n['node-name'] === name);
  const recording = (d: ManifestDisk) =>
    nodes.find((n) => n['node-name'] === d.node)?.['dirty-bitmaps']?.find((b) => b.name === d.bitmap)
      ?.recording;
  const stop = filtered
    .filter((d) => recording(d))
    .map((d) => ({ type: 'block-dirty-bitmap-disable', data: { node: d.node, name: d.bitmap } }));
  if (stop.length > 0) await qmp.execute('transaction', { actions: stop });
  for (const d of filtered) if (!has(d.accessNode as string)) await addAccess(qmp, nodesOf(d));
}

function nodesOf(d: ManifestDisk): FleecingNodes {
  return {
    disk: d.node,
    overlayNode: d.overlayNode,
    cbwNode: d.cbwNode as string,
    accessNode: d.accessNode as string,
  };
}

/** The block nodes and devices writing to `node`, or null if one of them cannot be moved. */
export async function writersOf(
  qmp: QmpClient,
  node: string,
  ignore: string[] = [],
): Promise<Writer[] | null> {
  const graph = await qmp.execute<BlockGraph>('x-debug-query-block-graph');
  const self = graph.nodes.find((n) => n.type === 'block-driver' && n.name === node);
  if (!self) throw new Error(`no block node ${node} in this QEMU process`);
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const writers: Writer[] = [];
  let backends = 0;
  for (const e of graph.edges) {
    const parent = byId.get(e.parent);
    if (e.child !== self.id || !parent || ignore.includes(parent.name)) continue;
    if (parent.type === 'block-backend') backends += 1;
    else if (parent.type === 'block-driver' && parent.name.startsWith(IO_FILTER_PREFIX))
      writers.push({ kind: 'io-filter', node: parent.name });
    else return null;
  }
  // Devices are the backends query-block names with a qdev path; an export's backend has none.
  const blocks = await qmp.execute<{ qdev?: string; inserted?: { 'node-name'?: string } }[]>('query-block');
  const devices = blocks.filter((b) => b.qdev && b.inserted?.['node-name'] === node);
  if (devices.length !== backends) return null;
  for (const d of devices) writers.push({ kind: 'device', qdev: d.qdev as string });
  return writers;
}

/** Adds the overlay's filter on `disk`; nothing writes through it until moveWriters. */
export async function addFilter(qmp: QmpClient, n: FleecingNodes): Promise<void> {
  await qmp.execute('blockdev-add', {
    driver: 'copy-before-write',
    'node-name': n.cbwNode,
    file: n.disk,
    target: n.overlayNode,
    'on-cbw-error': 'break-snapshot',
    'cbw-timeout': CBW_TIMEOUT_SECONDS,
  });
}

/** The read-only view of the point: added once the writers are on the filter. */
export async function addAccess(qmp: QmpClient, n: FleecingNodes): Promise<void> {
  await qmp.execute('blockdev-add', {
    driver: 'snapshot-access',
    'node-name': n.accessNode,
    file: n.cbwNode,
  });
}

/**
 * Moves each writer onto its new node, all at once as the guest sees it: OSR's filter nodes in one
 * blockdev-reopen (drained together), devices of a running VM while it is paused for the moment.
 */
export async function moveWriters(
  qmp: QmpClient,
  moves: { writers: Writer[]; to: string }[],
  pauseMarker: string,
): Promise<void> {
  const reopen = moves.flatMap(({ writers, to }) =>
    writers.flatMap((w) =>
      w.kind === 'io-filter'
        ? [{ driver: 'throttle', 'node-name': w.node, 'throttle-group': IO_THROTTLE_GROUP, file: to }]
        : [],
    ),
  );
  const devices = moves.flatMap(({ writers, to }) =>
    writers.flatMap((w) => (w.kind === 'device' ? [{ qdev: w.qdev, to }] : [])),
  );
  if (reopen.length > 0) await qmp.execute('blockdev-reopen', { options: reopen });
  if (devices.length === 0) return;
  const switchAll = async () => {
    for (const d of devices) await qmp.execute('qom-set', { path: d.qdev, property: 'drive', value: d.to });
  };
  const pause = devices.length > 1 && (await runState(qmp)) === 'running';
  await (pause ? withMarkedPause(qmp, pauseMarker, switchAll) : switchAll());
}

/**
 * Takes down the fleecing nodes of `key` (access, then filter once its writers are back on the
 * disk); the overlays go with the caller's other nodes. Returns whether any existed.
 */
export async function removeFilters(qmp: QmpClient, key: string, pauseMarker: string): Promise<boolean> {
  const mine = (name: string) => name.startsWith(`${OVERLAY_PREFIX}${key}-`);
  const graph = await qmp.execute<BlockGraph>('x-debug-query-block-graph');
  const names = graph.nodes.filter((n) => n.type === 'block-driver' && mine(n.name)).map((n) => n.name);
  const filters = names.filter((n) => n.endsWith('c'));
  for (const n of names.filter((x) => x.endsWith('a')))
    await ignoreMissing(qmp.execute('blockdev-del', { 'node-name': n }));
  const byId = new Map(graph.nodes.map((n) => [n.id, n.name]));
  const moves: { writers: Writer[]; to: string }[] = [];
  for (const f of filters) {
    const id = graph.nodes.find((n) => n.name === f)?.id;
    const disk = graph.edges.find((e) => e.parent === id && e.name === 'file');
    const writers = await writersOf(qmp, f);
    if (!disk || !writers) throw new Error(`fleecing filter ${f} has a writer OSR did not put there`);
    moves.push({ writers, to: byId.get(disk.child) as string });
  }
  await moveWriters(qmp, moves, pauseMarker);
  for (const f of filters) await ignoreMissing(qmp.execute('blockdev-del', { 'node-name': f }));
  return names.length > 0;
}

export async function ignoreMissing(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    // Gone already (another release, or QEMU finished it): that is the state we want.
    if (
      err instanceof QmpError &&
      /not found|no such|does not exist|cannot find|failed to find/i.test(err.desc)
    )
      return;
    throw err;
  }
}

export async function createOverlayFile(file: string, size: number): Promise<void> {
  // No backing file in the header: the backing, if any, is given as a node at blockdev-add.
  try {
    await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(size)]);
  } catch (err) {
    const e = err as { stderr?: string; message?: string };
    throw new Error(`cannot create fleecing overlay ${file}: ${(e.stderr || e.message || '').trim()}`);
  }
}
