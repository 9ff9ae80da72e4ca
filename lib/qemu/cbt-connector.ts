// Agentless changed-block tracking over QMP: persistent dirty bitmaps on the disks of a QEMU
// process (VM or qemu-storage-daemon), frozen points in time through copy-before-write
// fleecing, and read-only NBD exports of those points with the bitmap of the changes.
//
// Per disk, bitmaps are named `osr-<generation>`. The enabled one with the highest generation
// records new writes; while a point in time is frozen, the previous generation is disabled and
// exported. Release drops it (success) or merges it into the recording one (failure), so a
// change is never forgotten.
//
// The QEMU objects and files of a frozen point are in cbt-point-state.ts, the bitmap naming in
// cbt-bitmaps.ts, the extent scans over NBD in changed-extents.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NbdClient } from './nbd-client';
import { bitmapGeneration, bitmapName, trackingOf, type BitmapInfo } from './cbt-bitmaps';
import {
  CbtPointState,
  OVERLAY_PREFIX,
  checkPitId,
  pitKey,
  publicView,
  type BlockGraph,
  type Manifest,
  type ManifestDisk,
  type NamedNode,
} from './cbt-point-state';
import type { FrozenDisk, FrozenView, ProtectedDisk, ReleaseResult, TrackingEnabled } from './cbt-types';
import { accessNodeOf, buildFleecing, cbwNodeOf, finishFleecing, writersOf } from './fleecing-graph';

export { coalesceExtents, type Extent } from '../disk/extents';
export * from './cbt-types';
export { bitmapGeneration, bitmapName, trackingOf, type BitmapInfo } from './cbt-bitmaps';
export { allocatedExtents, dirtyExtents } from './changed-extents';

const FORMAT_DRIVERS = new Set(['qcow2', 'raw', 'qed', 'vmdk', 'vdi', 'vhdx', 'vpc', 'luks', 'parallels']);

export class CbtConnector extends CbtPointState {
  /** Top-level qcow2/raw nodes of the QEMU process: the disks a machine writes to. */
  async listDisks(): Promise<ProtectedDisk[]> {
    const nodes = await this.qmp.execute<NamedNode[]>('query-named-block-nodes', { flat: true });
    const graph = await this.qmp.execute<BlockGraph>('x-debug-query-block-graph');
    const devices = await this.deviceNames();
    const byName = new Map(nodes.map((n) => [n['node-name'], n]));
    const graphName = new Map(graph.nodes.map((n) => [n.id, n]));

    // A format node under another format node (a backing file, a qcow2 in a raw wrapper) is
    // not a disk of its own. Our fleecing overlays and filters (copy-before-write) do not count.
    const underFormat = new Set<string>();
    for (const e of graph.edges) {
      const parent = graphName.get(e.parent);
      const child = graphName.get(e.child);
      if (!parent || !child || parent.type !== 'block-driver' || child.type !== 'block-driver') continue;
      if (parent.name.startsWith(OVERLAY_PREFIX)) continue;
      const drv = byName.get(parent.name)?.drv;
      if (drv !== undefined && FORMAT_DRIVERS.has(drv)) underFormat.add(child.name);
    }

    const disks: ProtectedDisk[] = [];
    for (const n of nodes) {
      const name = n['node-name'];
      if ((n.drv !== 'qcow2' && n.drv !== 'raw') || name.startsWith(OVERLAY_PREFIX) || underFormat.has(name))
        continue;
      const t = trackingOf(n['dirty-bitmaps'] ?? []);
      disks.push({
        node: name,
        format: n.drv,
        size: n.image?.['virtual-size'] ?? 0,
        file: n.file,
        device: devices.get(name) ?? null,
        hasPersistentBitmap: t.current?.persistent ?? false,
        tracking: t.current
          ? {
              bitmap: t.current.name,
              generation: bitmapGeneration(t.current.name) ?? 0,
              persistent: t.current.persistent,
              granularity: t.current.granularity,
              frozenBitmap: t.frozen?.name ?? null,
            }
          : null,
      });
    }
    return disks;
  }

  /**
   * Starts recording writes on `node` (idempotent). Persistent on qcow2; on raw the bitmap lives
   * only in the QEMU process, so a restart of it forces a full resync.
   */
  async enableTracking(node: string, options: { granularity?: number } = {}): Promise<TrackingEnabled> {
    const disk = await this.disk(node);
    const warnings: string[] = [];
    const volatile = disk.format !== 'qcow2';
    if (volatile) {
      warnings.push(
        `disk ${node} is ${disk.format}: its change tracking is volatile, a restart of the QEMU process forces a full resync`,
      );
    }
    const t = trackingOf(await this.bitmapsOf(node));
    if (t.current) {
      return {
        node,
        bitmap: t.current.name,
        generation: bitmapGeneration(t.current.name) ?? 0,
        persistent: t.current.persistent,
        granularity: t.current.granularity,
        fullSyncRequired: false,
        warnings,
      };
    }
    // Without a recording bitmap, leftovers (marked inconsistent after QEMU was killed, or
    // disabled with no successor) cannot say what changed: drop them and start over.
    for (const b of [...t.inconsistent, ...t.others]) {
      warnings.push(
        `bitmap ${b.name} on ${node} was unusable (${b.inconsistent ? 'inconsistent after a crash' : 'not recording'}) and was removed`,
      );
      await this.qmp.execute('block-dirty-bitmap-remove', { node, name: b.name });
    }
    const name = bitmapName(t.maxGeneration + 1);
    const args: Record<string, unknown> = { node, name, persistent: !volatile };
    if (options.granularity !== undefined) args.granularity = options.granularity;
    await this.qmp.execute('block-dirty-bitmap-add', args);
    const added = (await this.bitmapsOf(node)).find((b) => b.name === name);
    return {
      node,
      bitmap: name,
      generation: t.maxGeneration + 1,
      persistent: !volatile,
      granularity: added?.granularity ?? options.granularity ?? 0,
      fullSyncRequired: true,
      warnings,
    };
  }

  /**
   * Freezes one crash-consistent point in time across `nodes` (one QMP transaction) and
   * exports each disk read-only over NBD with its bitmap of changes. Calling it again with the
   * same pitId returns the same view, completing it if an earlier call was interrupted.
   */
  async freeze(nodes: string[], pitId: string): Promise<FrozenView> {
    checkPitId(pitId);
    if (nodes.length === 0) throw new Error('freeze: no disks given');
    if (new Set(nodes).size !== nodes.length)
      throw new Error(`freeze: a disk is listed twice in ${nodes.join(', ')}`);

    const existing = await this.readManifest(pitId);
    if (existing) {
      const same = existing.disks.map((d) => d.node).join('\0') === nodes.join('\0');
      if (!same) {
        throw new Error(
          `point in time ${pitId} is already frozen for ${existing.disks.map((d) => d.node).join(', ')}, not ${nodes.join(', ')}`,
        );
      }
      const running = (await this.liveDisks(existing)).size;
      if (running === existing.disks.length) {
        // The writers moved (the point's moment passed): finish what an interrupted call left.
        await finishFleecing(this.qmp, existing);
        await this.addExports(existing);
        return publicView(existing);
      }
      if (running > 0 || (await this.transactionMayHaveRun(existing))) {
        // Someone may have read from that view already: a new one under the same id would mix two instants.
        throw new Error(
          `point in time ${pitId} was frozen but is lost (QEMU restarted or a fleecing job ended): ` +
            'release it with success=false and freeze under a new id',
        );
      }
      // The freeze was interrupted before its transaction: start again from a clean state.
      await this.removeQemuObjects(pitId, existing);
      await this.removeFiles(pitId, existing);
    }

    await fs.promises.mkdir(this.workDir, { recursive: true });
    const nbdSocket = await this.ensureNbdServer();
    const all = await this.listDisks();
    const key = pitKey(pitId);
    const disks: ManifestDisk[] = [];
    for (const [i, node] of nodes.entries()) {
      const disk = all.find((d) => d.node === node);
      if (!disk)
        throw new Error(`freeze: no disk node ${node} (have ${all.map((d) => d.node).join(', ') || 'none'})`);
      const t = await this.prepareBitmaps(node);
      const overlayNode = `${OVERLAY_PREFIX}${key}-${i}`;
      disks.push({
        node,
        exportName: `osr-${pitId}-${node}`,
        nbdSocket,
        bitmap: t.current.name,
        nextBitmap: bitmapName(t.maxGeneration + 1),
        size: disk.size,
        granularity: t.current.granularity,
        overlayNode,
        overlayFile: path.join(this.workDir, `osr-${key}-${i}.qcow2`),
        jobId: `osrbk-${key}-${i}`,
        exportId: `osrex-${key}-${i}`,
      });
    }
    // One kind of fleecing per point: the disks' moments must be one.
    const movable = await Promise.all(nodes.map(async (n) => (await writersOf(this.qmp, n)) !== null));
    if (movable.every(Boolean))
      for (const d of disks)
        Object.assign(d, { cbwNode: cbwNodeOf(d.overlayNode), accessNode: accessNodeOf(d.overlayNode) });
    // Written before anything changes in QEMU, so a restarted caller can always clean up.
    const manifest: Manifest = { pitId, instant: new Date().toISOString(), disks };
    await this.writeManifest(manifest);

    try {
      await buildFleecing(this.qmp, manifest, {
        persistent: async (d) =>
          (await this.bitmapsOf(d.node)).find((b) => b.name === d.bitmap)?.persistent ?? false,
        // The instant: taken right before the writers move (or QEMU drains all disks for the job).
        atInstant: async () => {
          manifest.instant = new Date().toISOString();
          await this.writeManifest(manifest);
        },
        pauseMarker: this.pauseMarker,
      });
    } catch (err) {
      // Nothing was frozen (the bitmaps switch last, or all at once): undo the preparation.
      await this.removeQemuObjects(pitId, manifest);
      await this.removeFiles(pitId, manifest);
      throw err;
    }
    try {
      await this.addExports(manifest);
    } catch (err) {
      await this.release(pitId, { success: false });
      throw err;
    }
    return publicView(manifest);
  }

  /**
   * False only if every disk still records into the bitmap the manifest was going to freeze and
   * no writer moved onto a filter: before its moment, a freeze can start over (the next bitmap,
   * if started, is merged as a leftover).
   */
  private async transactionMayHaveRun(m: Manifest): Promise<boolean> {
    const filtered = m.disks.some((d) => d.cbwNode);
    if (filtered && (await this.liveDisks(m)).size > 0) return true;
    for (const d of m.disks) {
      const bitmaps = (await this.bitmapsOrNull(d.node)) ?? [];
      const old = bitmaps.find((b) => b.name === d.bitmap);
      if (!old?.recording || old.inconsistent) return true;
      if (!filtered && bitmaps.some((b) => b.name === d.nextBitmap)) return true;
    }
    return false;
  }

  /**
   * Ends a point in time. success: its changes are safely stored, forget them. Failure: merge
   * them into the recording bitmap so the next cycle sends them again. Safe to call twice.
   */
  async release(pitId: string, options: { success: boolean }): Promise<ReleaseResult> {
    checkPitId(pitId);
    const manifest = await this.readManifest(pitId);
    const removedQemu = await this.removeQemuObjects(pitId, manifest);
    const fullSyncRequired: string[] = [];
    let bitmapsChanged = false;
    for (const d of manifest?.disks ?? []) {
      const bitmaps = await this.bitmapsOrNull(d.node);
      if (!bitmaps) continue; // the disk itself is gone: nothing to keep or merge
      const old = bitmaps.find((b) => b.name === d.bitmap);
      const next = bitmaps.find((b) => b.name === d.nextBitmap);
      if (!next || next.inconsistent) fullSyncRequired.push(d.node);
      if (!old) continue;
      bitmapsChanged = true;
      if (!options.success && next && !next.inconsistent) {
        // Merge and remove in one transaction: a crash leaves either both bitmaps or the merged one.
        await this.qmp.execute('transaction', {
          actions: [
            {
              type: 'block-dirty-bitmap-merge',
              data: { node: d.node, target: d.nextBitmap, bitmaps: [d.bitmap] },
            },
            { type: 'block-dirty-bitmap-remove', data: { node: d.node, name: d.bitmap } },
          ],
        });
      } else {
        await this.qmp.execute('block-dirty-bitmap-remove', { node: d.node, name: d.bitmap });
      }
    }
    const removedFiles = await this.removeFiles(pitId, manifest);
    return { released: removedQemu || bitmapsChanged || removedFiles, fullSyncRequired };
  }

  /** Ends protection: releases every point in time (changes kept) and removes OSR's bitmaps. */
  async disableTracking(): Promise<void> {
    for (const pitId of await this.listFrozen()) await this.release(pitId, { success: false });
    for (const disk of await this.listDisks()) {
      for (const b of (await this.bitmapsOrNull(disk.node)) ?? []) {
        if (bitmapGeneration(b.name) !== null)
          await this.qmp.execute('block-dirty-bitmap-remove', { node: disk.node, name: b.name });
      }
    }
  }

  /** Opens an NBD connection to a frozen disk with its dirty bitmap and allocation contexts. */
  openView(disk: FrozenDisk): Promise<NbdClient> {
    return NbdClient.connect({
      socket: disk.nbdSocket,
      exportName: disk.exportName,
      metaContexts: ['base:allocation', `qemu:dirty-bitmap:${disk.bitmap}`],
    });
  }

  // ---- internals ----

  private async disk(node: string): Promise<ProtectedDisk> {
    const disks = await this.listDisks();
    const disk = disks.find((d) => d.node === node);
    if (!disk)
      throw new Error(
        `no disk node ${node} in this QEMU process (have ${disks.map((d) => d.node).join(', ') || 'none'})`,
      );
    return disk;
  }

  /**
   * Checks the disk can be frozen. A frozen bitmap with no point in time left (QEMU restarted
   * during a freeze, or the manifest was lost) is merged back into the recording one.
   */
  private async prepareBitmaps(node: string): Promise<{ current: BitmapInfo; maxGeneration: number }> {
    const t = trackingOf(await this.bitmapsOf(node));
    if (!t.current) {
      // QEMU writes persistent bitmaps into the image only when it closes it cleanly: after a
      // kill, those it loaded are marked inconsistent and those it created since are gone.
      const lost =
        t.inconsistent.length > 0
          ? ' (its bitmap became inconsistent: QEMU was killed)'
          : ' (never enabled, or lost when QEMU stopped uncleanly)';
      throw new Error(
        `change tracking is not running on ${node}${lost}: call enableTracking and do a full sync`,
      );
    }
    if (t.frozen) {
      const holder = await this.frozenHolder(node);
      if (holder)
        throw new Error(`disk ${node} is already frozen by point in time ${holder}: release it first`);
    }
    // Merging any consistent leftover into the recording bitmap can only make the next cycle
    // send more, never less; inconsistent ones hold nothing reliable and predate the current one.
    const leftovers = [...(t.frozen ? [t.frozen] : []), ...t.others];
    if (leftovers.length > 0) {
      await this.qmp.execute('transaction', {
        actions: [
          {
            type: 'block-dirty-bitmap-merge',
            data: { node, target: t.current.name, bitmaps: leftovers.map((b) => b.name) },
          },
          ...leftovers.map((b) => ({ type: 'block-dirty-bitmap-remove', data: { node, name: b.name } })),
        ],
      });
    }
    for (const b of t.inconsistent) {
      await this.qmp.execute('block-dirty-bitmap-remove', { node, name: b.name });
    }
    return { current: t.current, maxGeneration: t.maxGeneration };
  }

  private async frozenHolder(node: string): Promise<string | null> {
    for (const pitId of await this.listFrozen()) {
      const m = await this.readManifest(pitId);
      if (m?.disks.some((d) => d.node === node)) return pitId;
    }
    const nodes = await this.qmp.execute<NamedNode[]>('query-named-block-nodes', { flat: true });
    const overlay = nodes.find((n) => n['node-name'].startsWith(OVERLAY_PREFIX));
    // An overlay of unknown origin may belong to another work folder on this QEMU process.
    if (overlay) {
      const graph = await this.qmp.execute<BlockGraph>('x-debug-query-block-graph');
      const ids = new Map(graph.nodes.map((n) => [n.id, n.name]));
      for (const e of graph.edges) {
        const parent = ids.get(e.parent) ?? '';
        // A backup job's overlay has the disk as backing, a fleecing filter as file.
        const fleeces = e.name === 'backing' || e.name === 'file';
        if (fleeces && parent.startsWith(OVERLAY_PREFIX) && ids.get(e.child) === node) {
          return `(overlay ${parent} from another work folder)`;
        }
      }
    }
    return null;
  }
}
