// Agentless changed-block tracking over QMP: persistent dirty bitmaps on the disks of a QEMU
// process (VM or qemu-storage-daemon), frozen points in time through copy-before-write
// fleecing, and read-only NBD exports of those points with the bitmap of the changes.
//
// Per disk, bitmaps are named `osr-<generation>`. The enabled one with the highest generation
// records new writes; while a point in time is frozen, the previous generation is disabled and
// exported. Release drops it (success) or merges it into the recording one (failure), so a
// change is never forgotten.
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { NbdClient, NBD_STATE_DIRTY, NBD_STATE_HOLE, NBD_STATE_ZERO } from './nbd-client';
import { QmpError } from './qmp-client';
import { coalesceExtents, type Extent } from '../disk/extents';

export { coalesceExtents, type Extent } from '../disk/extents';
import type { QmpClient } from './qmp-client';

const execFileAsync = promisify(execFile);

export interface CbtConnectorOptions {
  /**
   * Folder on the QEMU host for fleecing overlays, point-in-time manifests and (when this
   * connector starts the NBD server) its socket. It must survive a restart of the caller.
   */
  workDir: string;
  /** Socket of an NBD server already running in the QEMU process (qemu-storage-daemon --nbd-server). */
  nbdSocket?: string;
  /** Timeout for QEMU to drop an export or end a job (default 30 s). */
  settleTimeoutMs?: number;
}

export interface TrackingState {
  /** The recording bitmap. */
  bitmap: string;
  generation: number;
  persistent: boolean;
  granularity: number;
  /** Bitmap held for a frozen point in time, if any. */
  frozenBitmap: string | null;
}

export interface ProtectedDisk {
  node: string;
  format: 'qcow2' | 'raw';
  size: number;
  file: string;
  /** Guest device or BlockBackend name on a qemu-system VM; null under qemu-storage-daemon. */
  device: string | null;
  /** A persistent, consistent, recording OSR bitmap exists: tracking survives a QEMU restart. */
  hasPersistentBitmap: boolean;
  tracking: TrackingState | null;
}

export interface TrackingEnabled {
  node: string;
  bitmap: string;
  generation: number;
  persistent: boolean;
  granularity: number;
  /** A new bitmap was started now: what happened before is unknown, so a full sync is needed. */
  fullSyncRequired: boolean;
  /** Why the caller should warn (volatile tracking on raw disks, a bitmap lost to a crash). */
  warnings: string[];
}

export interface FrozenDisk {
  node: string;
  exportName: string;
  nbdSocket: string;
  /** Bitmap of the changes up to the freeze; exported as `qemu:dirty-bitmap:<bitmap>`. */
  bitmap: string;
  size: number;
  granularity: number;
}

export interface FrozenView {
  pitId: string;
  /** ISO time taken just before the freeze: every write acknowledged before it is in the view. */
  instant: string;
  disks: FrozenDisk[];
}

export interface ReleaseResult {
  /** Something of this point in time existed and was removed. */
  released: boolean;
  /** Disks whose recording bitmap vanished: their next cycle must be a full sync. */
  fullSyncRequired: string[];
}

interface ManifestDisk extends FrozenDisk {
  overlayNode: string;
  overlayFile: string;
  jobId: string;
  exportId: string;
  /** The bitmap recording since the freeze; a failed release merges `bitmap` into it. */
  nextBitmap: string;
}

interface Manifest {
  pitId: string;
  instant: string;
  disks: ManifestDisk[];
}

/** One entry of `dirty-bitmaps` in query-named-block-nodes. */
export interface BitmapInfo {
  name: string;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  granularity: number;
  count: number;
  inconsistent?: boolean;
}

interface NamedNode {
  'node-name': string;
  drv: string;
  file: string;
  image?: { 'virtual-size'?: number };
  'dirty-bitmaps'?: BitmapInfo[];
}

interface BlockGraph {
  nodes: { id: number; type: string; name: string }[];
  edges: { parent: number; child: number; name: string }[];
}

const FORMAT_DRIVERS = new Set(['qcow2', 'raw', 'qed', 'vmdk', 'vdi', 'vhdx', 'vpc', 'luks', 'parallels']);
const PIT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const BITMAP = /^osr-(\d+)$/;
const OVERLAY_PREFIX = 'osrfl-';
// sun_path is 108 bytes on Linux including the terminating NUL.
const MAX_UNIX_PATH = 107;

export function bitmapName(generation: number): string {
  return `osr-${generation}`;
}

/** The generation of an OSR bitmap name, or null for other bitmaps. */
export function bitmapGeneration(name: string): number | null {
  const m = BITMAP.exec(name);
  return m?.[1] === undefined ? null : Number(m[1]);
}

/**
 * Reads the OSR bitmaps of one node: the recording one, the frozen one (the newest disabled
 * one older than it), other consistent leftovers, and those QEMU marked inconsistent because
 * it was killed while they were in use.
 */
export function trackingOf(bitmaps: BitmapInfo[]): {
  current: BitmapInfo | null;
  frozen: BitmapInfo | null;
  others: BitmapInfo[];
  inconsistent: BitmapInfo[];
  maxGeneration: number;
} {
  const gen = (b: BitmapInfo): number => bitmapGeneration(b.name) ?? 0;
  const osr = bitmaps.filter((b) => bitmapGeneration(b.name) !== null).sort((a, b) => gen(a) - gen(b));
  const usable = osr.filter((b) => !b.inconsistent);
  const current = usable.filter((b) => b.recording).pop() ?? null;
  const frozen = current ? (usable.filter((b) => !b.recording && gen(b) < gen(current)).pop() ?? null) : null;
  const last = osr[osr.length - 1];
  return {
    current,
    frozen,
    others: usable.filter((b) => b !== current && b !== frozen),
    inconsistent: osr.filter((b) => b.inconsistent),
    maxGeneration: last ? gen(last) : 0,
  };
}

export class CbtConnector {
  private readonly workDir: string;
  private readonly settleTimeoutMs: number;
  private readonly nbdSocket: string | undefined;

  constructor(
    private readonly qmp: QmpClient,
    options: CbtConnectorOptions,
  ) {
    this.workDir = path.resolve(options.workDir);
    this.nbdSocket = options.nbdSocket;
    this.settleTimeoutMs = options.settleTimeoutMs ?? 30_000;
  }

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
      const jobs = new Set((await this.jobs()).map((j) => j.id));
      const running = existing.disks.filter((d) => jobs.has(d.jobId)).length;
      if (running === existing.disks.length) {
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
      disks.push({
        node,
        exportName: `osr-${pitId}-${node}`,
        nbdSocket,
        bitmap: t.current.name,
        nextBitmap: bitmapName(t.maxGeneration + 1),
        size: disk.size,
        granularity: t.current.granularity,
        overlayNode: `${OVERLAY_PREFIX}${key}-${i}`,
        overlayFile: path.join(this.workDir, `osr-${key}-${i}.qcow2`),
        jobId: `osrbk-${key}-${i}`,
        exportId: `osrex-${key}-${i}`,
      });
    }
    // Written before anything changes in QEMU, so a restarted caller can always clean up.
    const manifest: Manifest = { pitId, instant: new Date().toISOString(), disks };
    await this.writeManifest(manifest);

    try {
      for (const d of disks) {
        await createOverlayFile(d.overlayFile, d.size);
        await this.qmp.execute('blockdev-add', {
          driver: 'qcow2',
          'node-name': d.overlayNode,
          file: { driver: 'file', filename: d.overlayFile },
          backing: d.node,
        });
      }
      const actions: unknown[] = [];
      for (const d of disks) {
        const persistent =
          (await this.bitmapsOf(d.node)).find((b) => b.name === d.bitmap)?.persistent ?? false;
        actions.push(
          {
            type: 'block-dirty-bitmap-add',
            data: { node: d.node, name: d.nextBitmap, persistent, granularity: d.granularity },
          },
          { type: 'block-dirty-bitmap-disable', data: { node: d.node, name: d.bitmap } },
          {
            type: 'blockdev-backup',
            data: { device: d.node, target: d.overlayNode, sync: 'none', 'job-id': d.jobId },
          },
        );
      }
      // The instant: taken right before QEMU drains all disks together and switches bitmaps.
      manifest.instant = new Date().toISOString();
      await this.writeManifest(manifest);
      await this.qmp.execute('transaction', { actions });
    } catch (err) {
      // Nothing was frozen (the transaction is all or nothing): undo the preparation.
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

  /** False only if every disk still records into the bitmap the manifest was going to freeze. */
  private async transactionMayHaveRun(m: Manifest): Promise<boolean> {
    for (const d of m.disks) {
      const bitmaps = (await this.bitmapsOrNull(d.node)) ?? [];
      const old = bitmaps.find((b) => b.name === d.bitmap);
      if (!old?.recording || old.inconsistent || bitmaps.some((b) => b.name === d.nextBitmap)) return true;
    }
    return false;
  }

  /** The frozen view of `pitId` if it is still complete in QEMU (after a restart of the caller). */
  async attach(pitId: string): Promise<FrozenView | null> {
    checkPitId(pitId);
    const manifest = await this.readManifest(pitId);
    if (!manifest) return null;
    const exports = new Set((await this.exports()).map((e) => e.id));
    const jobs = new Set((await this.jobs()).map((j) => j.id));
    const complete = manifest.disks.every((d) => exports.has(d.exportId) && jobs.has(d.jobId));
    return complete ? publicView(manifest) : null;
  }

  /** Point-in-time ids with state in the work folder (frozen, or left by an interrupted call). */
  async listFrozen(): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.promises.readdir(this.workDir);
    } catch {
      return [];
    }
    const ids: string[] = [];
    for (const n of names.filter((n) => /^osr-[0-9a-f]+\.json$/.test(n))) {
      const m = await readJson<Manifest>(path.join(this.workDir, n));
      if (m) ids.push(m.pitId);
    }
    return ids.sort();
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

  private async bitmapsOrNull(node: string): Promise<BitmapInfo[] | null> {
    const nodes = await this.qmp.execute<NamedNode[]>('query-named-block-nodes', { flat: true });
    const n = nodes.find((x) => x['node-name'] === node);
    return n ? (n['dirty-bitmaps'] ?? []) : null;
  }

  private async bitmapsOf(node: string): Promise<BitmapInfo[]> {
    const b = await this.bitmapsOrNull(node);
    if (!b) throw new Error(`no block node ${node} in this QEMU process`);
    return b;
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
        if (e.name === 'backing' && parent.startsWith(OVERLAY_PREFIX) && ids.get(e.child) === node) {
          return `(overlay ${parent} from another work folder)`;
        }
      }
    }
    return null;
  }

  /** Drops exports, fleecing jobs and overlay nodes of a point in time. Returns whether any existed. */
  private async removeQemuObjects(pitId: string, manifest: Manifest | null): Promise<boolean> {
    const key = pitKey(pitId);
    const mine = (id: string, prefix: string): boolean => id.startsWith(`${prefix}${key}-`);
    let any = false;

    const exports = (await this.exports()).filter((e) => mine(e.id, 'osrex-'));
    for (const e of exports) {
      // hard: a reader still connected (a crashed process server) must not keep the view alive.
      await ignoreMissing(this.qmp.execute('block-export-del', { id: e.id, mode: 'hard' }));
      any = true;
    }
    await this.waitUntil(
      async () => !(await this.exports()).some((e) => mine(e.id, 'osrex-')),
      'exports to close',
    );

    const jobs = (await this.jobs()).filter((j) => mine(j.id, 'osrbk-'));
    for (const j of jobs) {
      if (j.status === 'concluded') await ignoreMissing(this.qmp.execute('job-dismiss', { id: j.id }));
      else await ignoreMissing(this.qmp.execute('block-job-cancel', { device: j.id, force: true }));
      any = true;
    }
    await this.waitUntil(
      async () => !(await this.jobs()).some((j) => mine(j.id, 'osrbk-')),
      'fleecing jobs to end',
    );

    const nodes = await this.qmp.execute<NamedNode[]>('query-named-block-nodes', { flat: true });
    const overlays = new Set(nodes.map((n) => n['node-name']).filter((n) => mine(n, OVERLAY_PREFIX)));
    for (const d of manifest?.disks ?? [])
      if (nodes.some((n) => n['node-name'] === d.overlayNode)) overlays.add(d.overlayNode);
    for (const n of overlays) {
      await ignoreMissing(this.qmp.execute('blockdev-del', { 'node-name': n }));
      any = true;
    }
    return any;
  }

  private async removeFiles(pitId: string, manifest: Manifest | null): Promise<boolean> {
    const key = pitKey(pitId);
    let names: string[];
    try {
      names = await fs.promises.readdir(this.workDir);
    } catch {
      return false;
    }
    const ours = names.filter((n) => n.startsWith(`osr-${key}-`) && n.endsWith('.qcow2'));
    const files = new Set(ours.map((n) => path.join(this.workDir, n)));
    for (const d of manifest?.disks ?? []) files.add(d.overlayFile);
    let any = false;
    for (const f of files) {
      if (fs.existsSync(f)) any = true;
      await fs.promises.rm(f, { force: true });
    }
    // The manifest goes last: until then a retry knows what to clean.
    const m = this.manifestPath(pitId);
    if (fs.existsSync(m)) any = true;
    await fs.promises.rm(m, { force: true });
    return any;
  }

  private async addExports(manifest: Manifest): Promise<void> {
    const have = new Set((await this.exports()).map((e) => e.id));
    for (const d of manifest.disks) {
      if (have.has(d.exportId)) continue;
      await this.qmp.execute('block-export-add', {
        type: 'nbd',
        id: d.exportId,
        'node-name': d.overlayNode,
        name: d.exportName,
        writable: false,
        bitmaps: [d.bitmap],
      });
    }
  }

  /**
   * The socket of the process's NBD server. QEMU runs at most one and cannot tell its address,
   * so either the caller names it or this connector starts it in the work folder (asked again
   * at every freeze, as QEMU may have restarted since).
   */
  private async ensureNbdServer(): Promise<string> {
    if (this.nbdSocket) return this.nbdSocket;
    const socketPath = path.join(this.workDir, 'nbd.sock');
    if (Buffer.byteLength(socketPath) > MAX_UNIX_PATH) {
      throw new Error(
        `NBD socket path ${socketPath} is longer than ${MAX_UNIX_PATH} bytes: use a shorter work folder`,
      );
    }
    try {
      await this.qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: socketPath } } });
    } catch (err) {
      const running = err instanceof QmpError && /already running/i.test(err.desc);
      // Started by this connector before a restart of the caller: its socket is still there.
      if (!running || !(await nbdServerAnswers(socketPath))) {
        throw running
          ? new Error(
              'an NBD server already runs in this QEMU process (e.g. qemu-storage-daemon --nbd-server): ' +
                'pass its unix socket path as the nbdSocket option',
            )
          : err;
      }
    }
    return socketPath;
  }

  private async deviceNames(): Promise<Map<string, string>> {
    const map = new Map<string, string>();
    const blocks =
      await this.qmp.execute<{ device: string; qdev?: string; inserted?: { 'node-name'?: string } }[]>(
        'query-block',
      );
    for (const b of blocks) {
      const node = b.inserted?.['node-name'];
      const name = b.device || b.qdev;
      if (node && name) map.set(node, name);
    }
    return map;
  }

  private exports(): Promise<{ id: string; 'node-name': string }[]> {
    return this.qmp.execute('query-block-exports');
  }

  private jobs(): Promise<{ id: string; status: string; type: string }[]> {
    return this.qmp.execute('query-jobs');
  }

  private async waitUntil(check: () => Promise<boolean>, what: string): Promise<void> {
    const deadline = Date.now() + this.settleTimeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline)
        throw new Error(`timed out after ${this.settleTimeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private manifestPath(pitId: string): string {
    return path.join(this.workDir, `osr-${pitKey(pitId)}.json`);
  }

  private async readManifest(pitId: string): Promise<Manifest | null> {
    const m = await readJson<Manifest>(this.manifestPath(pitId));
    return m && m.pitId === pitId ? m : null;
  }

  private async writeManifest(m: Manifest): Promise<void> {
    const file = this.manifestPath(m.pitId);
    await fs.promises.writeFile(`${file}.tmp`, JSON.stringify(m, null, 2));
    await fs.promises.rename(`${file}.tmp`, file);
  }
}

/** Dirty extents of a frozen disk: what changed since the previous point in time. */
export async function dirtyExtents(nbd: NbdClient, disk: FrozenDisk): Promise<Extent[]> {
  const all = await nbd.blockStatus(0, nbd.size, `qemu:dirty-bitmap:${disk.bitmap}`);
  return coalesceExtents(all.filter((e) => (e.flags & NBD_STATE_DIRTY) !== 0));
}

/**
 * Extents holding data (neither hole nor known zeros). A full sync may skip the rest only if
 * its target reads as zeros there (a fresh replica).
 */
export async function allocatedExtents(nbd: NbdClient): Promise<Extent[]> {
  const all = await nbd.blockStatus(0, nbd.size, 'base:allocation');
  return coalesceExtents(all.filter((e) => (e.flags & (NBD_STATE_HOLE | NBD_STATE_ZERO)) === 0));
}

function publicView(m: Manifest): FrozenView {
  return {
    pitId: m.pitId,
    instant: m.instant,
    disks: m.disks.map((d) => ({
      node: d.node,
      exportName: d.exportName,
      nbdSocket: d.nbdSocket,
      bitmap: d.bitmap,
      size: d.size,
      granularity: d.granularity,
    })),
  };
}

function checkPitId(pitId: string): void {
  if (!PIT_ID.test(pitId)) {
    throw new Error(
      `point-in-time id "${pitId}" must be 1-100 characters of A-Z a-z 0-9 . _ - and start with a letter or digit`,
    );
  }
}

// Node names are limited to 31 characters, so QEMU objects carry a hash of the pitId.
function pitKey(pitId: string): string {
  return createHash('sha256').update(pitId).digest('hex').slice(0, 12);
}

async function createOverlayFile(file: string, size: number): Promise<void> {
  // No backing file in the header: the backing is given as a node at blockdev-add.
  try {
    await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(size)]);
  } catch (err) {
    const e = err as { stderr?: string; message?: string };
    throw new Error(`cannot create fleecing overlay ${file}: ${(e.stderr || e.message || '').trim()}`);
  }
}

async function ignoreMissing(p: Promise<unknown>): Promise<void> {
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

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await fs.promises.readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** Whether an NBD server answers on `socketPath`; leaves politely so QEMU logs nothing. */
function nbdServerAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ path: socketPath });
    s.once('data', () => {
      // Fixed-newstyle client flags, then NBD_OPT_ABORT.
      const bye = Buffer.alloc(20);
      bye.writeUInt32BE(1, 0);
      bye.write('IHAVEOPT', 4, 'latin1');
      bye.writeUInt32BE(2, 12);
      s.end(bye);
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('close', () => resolve(false));
    s.setTimeout(5000, () => s.destroy());
  });
}
