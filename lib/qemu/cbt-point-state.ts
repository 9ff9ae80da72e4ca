// What a frozen point in time leaves in a QEMU process and on disk, and how it is removed: the
// fleecing overlays (qcow2 files and nodes), the filters or backup jobs that fill them (the graph
// is built in fleecing-graph.ts), the NBD exports, the NBD server, and the manifest file that lets
// a restarted caller find and clean all of it.
// CbtConnector builds on this; nothing here decides what to freeze or what a bitmap means.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { QmpError } from './qmp-client';
import { NbdServerRunningError, nbdServerState } from './nbd-server-state';
import type { QmpClient } from './qmp-client';
import type { BitmapInfo } from './cbt-bitmaps';
import type { CbtConnectorOptions, FrozenDisk, FrozenView } from './cbt-types';
import { OVERLAY_PREFIX, ignoreMissing, removeFilters, writersOf } from './fleecing-graph';
import { resumeIfLeftPaused } from './switch-pause';

export { OVERLAY_PREFIX, createOverlayFile, ignoreMissing, type BlockGraph } from './fleecing-graph';

export interface ManifestDisk extends FrozenDisk {
  overlayNode: string;
  overlayFile: string;
  jobId: string;
  exportId: string;
  /** The bitmap recording since the freeze; a failed release merges `bitmap` into it. */
  nextBitmap: string;
  /**
   * The copy-before-write filter and the snapshot-access node the export reads (fleecing-graph.ts).
   * Absent: QEMU's backup job `jobId` fleeces this disk (its writers could not be moved).
   */
  cbwNode?: string;
  accessNode?: string;
}

export interface Manifest {
  pitId: string;
  instant: string;
  disks: ManifestDisk[];
}

export interface NamedNode {
  'node-name': string;
  drv: string;
  file: string;
  image?: { 'virtual-size'?: number };
  'dirty-bitmaps'?: BitmapInfo[];
}

const PIT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
// sun_path is 108 bytes on Linux including the terminating NUL.
const MAX_UNIX_PATH = 107;

export class CbtPointState {
  protected readonly workDir: string;
  protected readonly settleTimeoutMs: number;
  protected readonly nbdSocket: string | undefined;

  constructor(
    protected readonly qmp: QmpClient,
    options: CbtConnectorOptions,
  ) {
    this.workDir = path.resolve(options.workDir);
    this.nbdSocket = options.nbdSocket;
    this.settleTimeoutMs = options.settleTimeoutMs ?? 30_000;
  }

  /** Marks a VM paused while its devices switch filters (switch-pause.ts). */
  protected get pauseMarker(): string {
    return path.join(this.workDir, 'vm-paused-for-switch');
  }

  /** Resumes a VM that a process server, dying mid-switch, left paused; see switch-pause.ts. */
  resumeIfLeftPaused(): Promise<boolean> {
    return resumeIfLeftPaused(this.qmp, this.pauseMarker);
  }

  /** The frozen view of `pitId` if it is still complete in QEMU (after a restart of the caller). */
  async attach(pitId: string): Promise<FrozenView | null> {
    checkPitId(pitId);
    const manifest = await this.readManifest(pitId);
    if (!manifest) return null;
    const exports = new Set((await this.exports()).map((e) => e.id));
    const live = await this.liveDisks(manifest);
    const complete = manifest.disks.every((d) => exports.has(d.exportId) && live.has(d.node));
    return complete ? publicView(manifest) : null;
  }

  /** Disks whose fleecing still keeps the point: its filter has the writers, or its backup job runs. */
  protected async liveDisks(m: Manifest): Promise<Set<string>> {
    const jobs = new Set((await this.jobs()).map((j) => j.id));
    const live = new Set<string>();
    for (const d of m.disks) {
      if (!d.cbwNode) {
        if (jobs.has(d.jobId)) live.add(d.node);
        continue;
      }
      const onDisk = await writersOf(this.qmp, d.node, [d.cbwNode]).catch(() => null);
      const onFilter = await writersOf(this.qmp, d.cbwNode, [d.accessNode ?? '']).catch(() => null);
      // Moved: nothing but the filter writes to the disk any more.
      if (onDisk?.length === 0 && onFilter && onFilter.length > 0) live.add(d.node);
    }
    return live;
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

  protected async bitmapsOrNull(node: string): Promise<BitmapInfo[] | null> {
    const nodes = await this.qmp.execute<NamedNode[]>('query-named-block-nodes', { flat: true });
    const n = nodes.find((x) => x['node-name'] === node);
    return n ? (n['dirty-bitmaps'] ?? []) : null;
  }

  protected async bitmapsOf(node: string): Promise<BitmapInfo[]> {
    const b = await this.bitmapsOrNull(node);
    if (!b) throw new Error(`no block node ${node} in this QEMU process`);
    return b;
  }

  /** Drops exports, fleecing filters or jobs and overlay nodes of a point in time. Returns whether any existed. */
  protected async removeQemuObjects(pitId: string, manifest: Manifest | null): Promise<boolean> {
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

    // The writers go back onto their disks before the filters go.
    if (await removeFilters(this.qmp, key, this.pauseMarker)) any = true;

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

  protected async removeFiles(pitId: string, manifest: Manifest | null): Promise<boolean> {
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

  protected async addExports(manifest: Manifest): Promise<void> {
    const have = new Set((await this.exports()).map((e) => e.id));
    for (const d of manifest.disks) {
      if (have.has(d.exportId)) continue;
      await this.qmp.execute('block-export-add', {
        type: 'nbd',
        id: d.exportId,
        'node-name': d.accessNode ?? d.overlayNode,
        name: d.exportName,
        writable: false,
        // Named with its node: snapshot-access is no filter, QEMU would not look below it.
        bitmaps: [{ node: d.node, name: d.bitmap }],
      });
    }
  }

  /**
   * The socket of the process's NBD server. QEMU runs at most one and cannot tell its address,
   * so either the caller names it or this connector starts it in the work folder (asked again
   * at every freeze, as QEMU may have restarted since).
   */
  protected async ensureNbdServer(): Promise<string> {
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
        throw running ? new NbdServerRunningError((await nbdServerState(this.qmp)).exports) : err;
      }
    }
    return socketPath;
  }

  protected async deviceNames(): Promise<Map<string, string>> {
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

  protected exports(): Promise<{ id: string; 'node-name': string }[]> {
    return this.qmp.execute('query-block-exports');
  }

  protected jobs(): Promise<{ id: string; status: string; type: string }[]> {
    return this.qmp.execute('query-jobs');
  }

  protected async waitUntil(check: () => Promise<boolean>, what: string): Promise<void> {
    const deadline = Date.now() + this.settleTimeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline)
        throw new Error(`timed out after ${this.settleTimeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  protected manifestPath(pitId: string): string {
    return path.join(this.workDir, `osr-${pitKey(pitId)}.json`);
  }

  protected async readManifest(pitId: string): Promise<Manifest | null> {
    const m = await readJson<Manifest>(this.manifestPath(pitId));
    return m && m.pitId === pitId ? m : null;
  }

  protected async writeManifest(m: Manifest): Promise<void> {
    const file = this.manifestPath(m.pitId);
    await fs.promises.writeFile(`${file}.tmp`, JSON.stringify(m, null, 2));
    await fs.promises.rename(`${file}.tmp`, file);
  }
}

export function publicView(m: Manifest): FrozenView {
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

export function checkPitId(pitId: string): void {
  if (!PIT_ID.test(pitId)) {
    throw new Error(
      `point-in-time id "${pitId}" must be 1-100 characters of A-Z a-z 0-9 . _ - and start with a letter or digit`,
    );
  }
}

// Node names are limited to 31 characters, so QEMU objects carry a hash of the pitId.
export function pitKey(pitId: string): string {
  return createHash('sha256').update(pitId).digest('hex').slice(0, 12);
}

export async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await fs.promises.readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** Whether an NBD server answers on `socketPath`; leaves politely so QEMU logs nothing. */
export function nbdServerAnswers(socketPath: string): Promise<boolean> {
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
