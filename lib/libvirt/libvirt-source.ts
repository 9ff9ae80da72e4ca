// The source connector for libvirt domains: changes through libvirt's own checkpoints and
// pull-mode backups (never a QMP monitor of our own: libvirtd holds the domain's only one), frozen
// disks read over the NBD export libvirt starts, writes held with suspend/resume (a group's
// barrier: 'libvirt-suspend'), app-consistent points through the guest agent
// (domfsfreeze/domfsthaw: guest-freeze.ts). The checkpoint chain is in
// checkpoints.ts; the connector keeps which point its backup job serves in its work folder.
import fs from 'node:fs';
import path from 'node:path';
import type { BarrierMethod } from '../../shared/group-types';
import type { LibvirtSource, ProtectedMachine } from '../../shared/replication-types';
import {
  FrozenPointLostError,
  SourceUnreachableError,
  type FrozenSourceView,
  type ReleaseOutcome,
  type SourceConnector,
  type SourceConnectorOptions,
  type SourceDisk,
  type SourceKind,
  type StopWritesResult,
  type TrackingStarted,
} from '../sources/source-connector';
import { abortBackup, beginBackup, runningBackup } from './backup-job';
import {
  BASE_CHECKPOINT,
  checkpointDisks,
  checkpointOf,
  createCheckpoint,
  deleteCheckpoint,
  osrCheckpoints,
} from './checkpoints';
import { domainInfo, type DomainDisk } from './domain';
import { exportFolderOf, type ExportFolder } from './export-folder';
import { openLibvirtFrozenDisk } from './frozen-disk';
import { thawLeftFrozen, withGuestFrozen } from './guest-freeze';
import { virsh, VirshError } from './virsh';

export const libvirtSource: SourceKind = {
  type: 'libvirt',
  async connect(machine, options) {
    if (machine.source.type !== 'libvirt') throw new Error(`machine ${machine.name} is not a libvirt domain`);
    const source = machine.source;
    // One cheap call: libvirt answers and the domain exists.
    await virsh(source.uri, ['domstate', '--', source.domain], { timeoutMs: 20_000 }).catch((err: Error) => {
      throw new SourceUnreachableError(`libvirt domain ${source.domain} at ${source.uri}: ${err.message}`);
    });
    return new LibvirtSourceConnector(machine, source, options);
  },
  openFrozenDisk: openLibvirtFrozenDisk,
};

/** What the work folder keeps of the point the domain's backup job serves. */
interface FrozenState {
  pitId: string;
  instant: string;
  disks: Array<{ diskId: string; sizeBytes: number; bitmap?: string }>;
}

/**
 * What a session has read of the domain: a freeze follows its cycle's discovery within the same
 * activity (a group's, while the members are suspended), so each is read once per session, not
 * per call. A session is one activity: seconds.
 */
interface Seen {
  disks?: Promise<DomainDisk[]>;
  base?: Promise<{ name?: string; disks: string[] }>;
}

class LibvirtSourceConnector implements SourceConnector {
  private readonly seen: Seen = {};
  /** The job's folder (on the libvirt host): a job serving its socket is OSR's. */
  private readonly folder: ExportFolder;

  constructor(
    private readonly machine: ProtectedMachine,
    private readonly source: LibvirtSource,
    private readonly options: SourceConnectorOptions,
  ) {
    this.folder = exportFolderOf(source);
  }

  private get uri() {
    return this.source.uri;
  }
  private get domain() {
    return this.source.domain;
  }

  private stateFile(): string {
    const { workDir } = this.options;
    if (!workDir) throw new Error(`source session of ${this.machine.name} was opened without a work folder`);
    fs.mkdirSync(workDir, { recursive: true });
    return path.join(workDir, 'libvirt-frozen.json');
  }

  /** Marks a guest freeze of OSR's until it is thawed (guest-freeze.ts). */
  private freezeMarker(): string {
    return path.join(path.dirname(this.stateFile()), 'libvirt-guest-frozen');
  }

  /** A guest left frozen by an interrupted app-consistent point is thawed before anything else. */
  private thawLeftFrozen(): Promise<void> {
    return thawLeftFrozen(this.uri, this.domain, this.freezeMarker());
  }

  private readState(): FrozenState | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.stateFile(), 'utf8')) as FrozenState;
    } catch {
      return undefined;
    }
  }

  private writeState(state: FrozenState | undefined): void {
    const file = this.stateFile();
    if (!state) return void fs.rmSync(file, { force: true });
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(state));
    fs.renameSync(`${file}.tmp`, file);
  }

  /** The base checkpoint and the disks it tracks (none when tracking never started or was lost). */
  private base(): Promise<{ name?: string; disks: string[] }> {
    return (this.seen.base ??= this.once('base', async () => {
      const [name] = await osrCheckpoints(this.uri, this.domain);
      return name ? { name, disks: await checkpointDisks(this.uri, this.domain, name) } : { disks: [] };
    }));
  }

  private disks(): Promise<DomainDisk[]> {
    return (this.seen.disks ??= this.once(
      'disks',
      async () => (await domainInfo(this.uri, this.domain)).disks,
    ));
  }

  /** A read kept for the session, forgotten if it fails. */
  private once<K extends keyof Seen>(key: K, read: () => NonNullable<Seen[K]>): NonNullable<Seen[K]> {
    const value = read();
    value.catch(() => {
      if (this.seen[key] === value) this.seen[key] = undefined;
    });
    return value;
  }

  /** OSR's checkpoints changed: the base is read again. */
  private checkpointsChanged(): void {
    this.seen.base = undefined;
  }

  private async running(): Promise<void> {
    const state = (await virsh(this.uri, ['domstate', '--', this.domain])).trim();
    if (state !== 'running' && state !== 'paused')
      throw new SourceUnreachableError(
        `libvirt domain ${this.domain} is ${state}: points resume when it runs again (\`virsh -c ${this.uri} start ${this.domain}\`)`,
      );
  }

  async discoverDisks(): Promise<SourceDisk[]> {
    const base = await this.base();
    return (await this.disks()).map((d) => ({
      diskId: d.target,
      sizeBytes: d.sizeBytes,
      format: d.format,
      tracked: d.trackable && base.disks.includes(d.target),
    }));
  }

  async enableTracking(diskId: string): Promise<TrackingStarted> {
    const disks = await this.disks();
    const disk = disks.find((d) => d.target === diskId);
    if (!disk) throw new Error(`libvirt domain ${this.domain} has no disk ${diskId}`);
    if (!disk.trackable)
      return {
        diskId,
        persistent: false,
        fullSyncRequired: true,
        warnings: [
          `${diskId} of ${this.domain} is ${disk.format}: libvirt keeps change bitmaps only in qcow2, so it is resynchronized by checksums every cycle; convert it to qcow2 to send only changes`,
        ],
      };
    const base = await this.base();
    if (base.disks.includes(diskId))
      return { diskId, persistent: true, fullSyncRequired: false, warnings: [] };
    if (!base.name) {
      // Tracking starts here: the base checkpoint over every selected qcow2 disk.
      await this.running();
      const { tracked, untracked } = this.split(disks);
      await createCheckpoint(this.uri, this.domain, BASE_CHECKPOINT, tracked, untracked);
      this.checkpointsChanged();
    }
    // With a base that lacks the disk (added later), the next point's checkpoint includes it.
    return { diskId, persistent: true, fullSyncRequired: true, warnings: [] };
  }

  /** Selected qcow2 disks get bitmaps; the rest none. */
  private split(disks: DomainDisk[], selected = this.source.disks) {
    const wanted = (d: DomainDisk) => d.trackable && (!selected || selected.includes(d.target));
    return {
      tracked: disks.filter(wanted).map((d) => d.target),
      untracked: disks.filter((d) => !wanted(d)).map((d) => d.target),
    };
  }

  async freeze(
    diskIds: string[],
    pitId: string,
    options: { quiesce?: boolean } = {},
  ): Promise<FrozenSourceView> {
    await this.thawLeftFrozen();
    const { dir, socket } = this.folder;
    const state = this.readState();
    const job = await runningBackup(this.uri, this.domain);
    const checkpoint = checkpointOf(pitId);
    if (state?.pitId === pitId) {
      const same = state.disks.map((d) => d.diskId).join() === [...diskIds].join();
      if (!same) throw new Error(`point ${pitId} of ${this.domain} was frozen with other disks`);
      if (job) return this.view(state, socket);
      if ((await osrCheckpoints(this.uri, this.domain)).includes(checkpoint))
        throw new FrozenPointLostError(
          `point ${pitId} of libvirt domain ${this.domain} is gone (its backup job ended: the domain stopped or was restarted)`,
        );
    } else if (job) {
      // The export folder is this machine's alone: a job serving there is a leftover of OSR's.
      if (job.socket !== socket)
        throw new Error(
          `libvirt domain ${this.domain} runs a backup job that is not OSR's (NBD ${job.socket ?? 'unknown'}); libvirt runs one at a time: end it (\`virsh domjobabort ${this.domain}\`) or wait for it`,
        );
      await abortBackup(this.uri, this.domain); // a point never released; its checkpoint stays above the base
    }
    await this.running();
    const disks = await this.disks();
    const base = await this.base();
    const chosen = diskIds.map((id) => {
      const d = disks.find((x) => x.target === id);
      if (!d) throw new Error(`libvirt domain ${this.domain} has no disk ${id}`);
      return d;
    });
    await this.folder.prepare();
    const incremental = (d: DomainDisk) =>
      base.name && base.disks.includes(d.target) ? base.name : undefined;
    const next: FrozenState = {
      pitId,
      instant: '',
      disks: chosen.map((d) => ({
        diskId: d.target,
        sizeBytes: d.sizeBytes,
        bitmap: incremental(d) ? `backup-${d.target}` : undefined,
      })),
    };
    const { tracked, untracked } = this.split(disks);
    const frozen = async () => {
      next.instant = new Date().toISOString();
      this.writeState(next);
      this.checkpointsChanged(); // the point's checkpoint, whether or not the call returns
      await beginBackup(this.uri, this.domain, {
        socket,
        disks: chosen.map((d) => ({
          target: d.target,
          incremental: incremental(d),
          scratchFile: path.posix.join(dir, `scratch-${d.target}.qcow2`),
        })),
        skipped: disks.filter((d) => !diskIds.includes(d.target)).map((d) => d.target),
        checkpoint: { name: checkpoint, tracked, untracked },
      }).catch(async (err: unknown) => {
        // The state stays: when libvirtd went away after starting the job, a retry finds the job
        // and returns it; when nothing started, a retry takes the point afresh.
        throw await this.bitmapLost(err);
      });
    };
    if (options.quiesce) await withGuestFrozen(this.uri, this.domain, this.freezeMarker(), frozen);
    else await frozen();
    return this.view(next, socket);
  }

  /**
   * A checkpoint whose bitmap is gone from the image (a crash left it inconsistent, or it was
   * removed by hand) fails every backup: OSR's checkpoints are dropped so that the next cycle
   * starts tracking anew and resynchronizes by checksums.
   */
  private async bitmapLost(err: unknown): Promise<unknown> {
    if (!(err instanceof VirshError) || !/bitmap/i.test(err.detail)) return err;
    this.checkpointsChanged();
    for (const name of (await osrCheckpoints(this.uri, this.domain)).reverse()) {
      // With its bitmaps where they are still in the image; only the metadata where they are gone.
      await deleteCheckpoint(this.uri, this.domain, name).catch(() =>
        deleteCheckpoint(this.uri, this.domain, name, { metadataOnly: true }),
      );
    }
    return new Error(
      `the change bitmaps of libvirt domain ${this.domain} are lost (${err.detail}); tracking starts again and the next cycle resynchronizes by checksums`,
    );
  }

  private view(state: FrozenState, socket: string): FrozenSourceView {
    const host = this.folder.remoteUri;
    return {
      pitId: state.pitId,
      instant: state.instant,
      disks: state.disks.map((d) => ({
        ...d,
        exportName: d.diskId,
        nbdSocket: socket,
        ...(host ? { nbdSocketHost: host } : {}),
      })),
    };
  }

  async listFrozen(): Promise<string[]> {
    const state = this.readState();
    return state ? [state.pitId] : [];
  }

  async release(pitId: string, options: { success: boolean }): Promise<ReleaseOutcome> {
    await this.thawLeftFrozen();
    const state = this.readState();
    let released = false;
    if (state?.pitId === pitId) {
      const job = await runningBackup(this.uri, this.domain);
      if (job?.socket === this.folder.socket) released = await abortBackup(this.uri, this.domain);
      this.writeState(undefined);
      await this.folder.remove();
    }
    const chain = await osrCheckpoints(this.uri, this.domain);
    const at = chain.indexOf(checkpointOf(pitId));
    if (at >= 0 && options.success) {
      // Stored: this checkpoint is the new base; the older ones hold nothing still needed.
      for (const older of chain.slice(0, at)) await deleteCheckpoint(this.uri, this.domain, older);
      released = true;
    } else if (at > 0) {
      // Not stored: drop its checkpoint; libvirt merges its changes into its parent.
      await deleteCheckpoint(this.uri, this.domain, chain[at] as string);
      released = true;
    }
    this.checkpointsChanged();
    const left = await this.base();
    const lost = (state?.disks ?? []).map((d) => d.diskId).filter((d) => !left.disks.includes(d));
    return { released, fullSyncRequired: left.name ? [] : lost };
  }

  async disableTracking(): Promise<void> {
    await this.thawLeftFrozen();
    const job = await runningBackup(this.uri, this.domain);
    if (job?.socket === this.folder.socket) await abortBackup(this.uri, this.domain);
    this.writeState(undefined);
    await this.folder.remove();
    for (const name of (await osrCheckpoints(this.uri, this.domain)).reverse())
      await deleteCheckpoint(this.uri, this.domain, name);
  }

  private async state(): Promise<string> {
    return (await virsh(this.uri, ['domstate', '--', this.domain])).trim();
  }

  async writeBarrier(): Promise<BarrierMethod> {
    return (await this.state()) === 'paused' ? 'already-paused' : 'libvirt-suspend';
  }

  async holdWrites(): Promise<BarrierMethod> {
    // libvirt pauses the vCPUs through its own monitor (QEMU drains in-flight I/O first).
    if ((await this.state()) === 'paused') return 'already-paused';
    await virsh(this.uri, ['suspend', '--', this.domain]);
    return 'libvirt-suspend';
  }

  async releaseWrites(method: BarrierMethod): Promise<void> {
    // 'qmp-stop': what holds of libvirt domains were called before 'libvirt-suspend' existed.
    const suspended = method === 'libvirt-suspend' || method === 'qmp-stop';
    if (suspended && (await this.state()) === 'paused') await virsh(this.uri, ['resume', '--', this.domain]);
  }

  async stopWrites(): Promise<StopWritesResult> {
    const state = await this.state();
    if (state === 'running') await virsh(this.uri, ['suspend', '--', this.domain]);
    return {
      method: 'qmp-stop',
      note: `libvirt domain ${this.domain} ${state === 'running' ? 'suspended' : `was ${state}`}`,
    };
  }

  async close(): Promise<void> {}
}
