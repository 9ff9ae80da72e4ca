// Change tracking and frozen points inside the machine, per protected disk a device-mapper stack:
//   osr-<disk>          era (64 KiB blocks; metadata on a loop file <dir>/<disk>.era)   ← the workload writes here
//   osr-<disk>-origin   snapshot-origin (a pass-through until a snapshot exists)
//   /dev/<disk>
// A point: checkpoint the era, suspend every osr-<disk> (writes drain), create a snapshot
// osr-<disk>-p<n> (copy-on-write in a sparse loop file as large as the disk: only a full filesystem
// under it can overflow it, point-store.ts), resume. Its changes are the era blocks written since
// the era the last shipped point started.
// While a group cut holds the writes (hold.ts), a point snapshots the held disks as they are.
import fs from 'node:fs';
import {
  deviceBytes,
  dmInfo,
  dmMessage,
  dmRemove,
  dmResume,
  dmSuspend,
  eraCurrent,
  eraTable,
  eraWrittenSince,
  freezeFs,
  thawFs,
} from './dm';
import { diskLogFile, dropLog, keptLog, logsToDisk, logsToRam, newLog } from './era-log';
import { TrackingError } from './errors';
import { dropCowFile } from './point-store';
import { withFreezeScripts, type FreezeScripts } from './freeze-scripts';
import { WriteHolds } from './hold';
import { SnapshotReaders } from './readers';
import { WriteStops } from './stop';
import { diskInUse, mountPointsOf } from './mounts';
import {
  blockExtents,
  cowFile,
  makeSnapshot,
  ERA_BLOCK_BYTES,
  makeStack,
  removeStack,
  snapName,
  top,
} from './stack';
import {
  bootId,
  loadTracking,
  saveTracking,
  type FrozenPointRecord,
  type TrackedDisk,
  type TrackingState,
} from './store';

export interface Enabled {
  sizeBytes: number;
  fullSyncRequired: boolean;
  warnings: string[];
  /** Why the change log cannot be trusted (a crash, a lost log): OSR resyncs by checksums. */
  trackingLost?: string;
}

export class Tracker {
  private state: TrackingState = loadTracking();
  private readonly readers = new SnapshotReaders();
  /** Consistency-group cuts: every tracked disk's writes held until released. */
  readonly holds = new WriteHolds(top, { log: (line) => process.stderr.write(`${line}\n`) });
  /** A planned failover: every stack's writes stopped until resumed, across agent restarts. */
  readonly stops = new WriteStops(
    top,
    () => this.state,
    () => this.save(),
  );

  private save(): void {
    saveTracking(this.state);
  }

  /**
   * The agent runs again: a stack left suspended resumes (unless a planned failover stopped it); a
   * stack gone (a boot) is rebuilt at once, over the era metadata only after a clean stop in the
   * boot that built it, else over a new log marked untrusted. The clean-stop mark is spent, and
   * only then does a log a clean stop left on the disk move back to RAM: a crash after the move
   * must not find the mark and trust the disk's copy, which no longer takes the writes.
   */
  async started(): Promise<string[]> {
    const problems: string[] = [];
    const stopped = this.stops.standing()?.disks ?? [];
    for (const [d, disk] of Object.entries(this.state.disks)) {
      const info = await dmInfo(top(d)).catch(() => undefined);
      // A stack that cannot be built now is built when OSR enables the disk again (and says why).
      if (info?.suspended) {
        if (!stopped.includes(d)) await dmResume(top(d));
      } else if (!info && fs.existsSync(disk.device))
        await this.build(d).catch((err: Error) => problems.push(`${d}: ${err.message}`));
    }
    await this.stops.reapply().catch((err: Error) => problems.push(`stopped writes: ${err.message}`));
    if (this.state.cleanShutdownBoot !== undefined) {
      delete this.state.cleanShutdownBoot;
      this.save();
    }
    problems.push(...(await logsToRam(Object.keys(this.state.disks).filter((d) => !stopped.includes(d)))));
    return problems;
  }

  /** Idempotent. A stack alive in the kernel kept every change, whatever happened to the agent. */
  async enable(disk: string): Promise<Enabled> {
    if (!/^[a-z][a-z0-9]*$/.test(disk) || !fs.existsSync(`/sys/block/${disk}`))
      throw new TrackingError('Error', `no disk ${disk} on this machine (see osr agent show: its disks)`);
    const known = this.state.disks[disk];
    if (!known || !(await dmInfo(top(disk)))) {
      const use = diskInUse(disk);
      if (use)
        throw new TrackingError(
          'DiskInUseError',
          `disk ${disk} is ${use}: a disk in use cannot have tracking slipped under it live. Protect a disk that is not in use (--disks), or stop using it (umount) and protect again; then use it as /dev/mapper/${top(disk)}`,
        );
      await this.build(disk);
    }
    const d = this.state.disks[disk] as TrackedDisk;
    return {
      sizeBytes: d.sizeBytes,
      fullSyncRequired: d.shippedEra === undefined,
      warnings: d.untrusted ? [d.untrusted] : [],
      ...(d.untrusted ? { trackingLost: d.untrusted } : {}),
    };
  }

  /**
   * Builds the stack of `disk` (its stack is gone). The era metadata is kept only when the agent
   * stopped cleanly in the boot that built the last stack: then the log missed nothing.
   */
  private async build(disk: string): Promise<void> {
    const known = this.state.disks[disk];
    const device = `/dev/${disk}`;
    const sizeBytes = await deviceBytes(device);
    const trusted =
      !!known &&
      known.sizeBytes === sizeBytes &&
      this.state.cleanShutdownBoot === known.bootId &&
      fs.existsSync(diskLogFile(disk));
    for (const [pitId, p] of Object.entries(this.state.points))
      if (p.disks[disk]) delete this.state.points[pitId];
    const log = trusted ? await keptLog(disk) : await newLog(disk, sizeBytes, ERA_BLOCK_BYTES);
    await makeStack(disk, sizeBytes, log);
    // Points shipped before, but the log since is lost or may lag: say so until a point ships.
    const untrusted =
      known && !trusted && known.shippedEra !== undefined
        ? `the change log of ${disk} was lost or may lag (the machine stopped without a clean shutdown of the agent): a resync by checksums follows`
        : trusted
          ? known.untrusted
          : undefined;
    this.state.disks[disk] = {
      device,
      sizeBytes,
      shippedEra: trusted ? known.shippedEra : undefined,
      bootId: bootId(),
      ...(untrusted ? { untrusted } : {}),
    };
    this.save();
  }

  /**
   * One point across `disks` (the same instant for all). Idempotent per pitId. `quiesce`: the
   * machine's freeze scripts and pre/post commands run around it (freeze-scripts.ts), and the
   * filesystems mounted on the tracked devices are frozen (fsfreeze) while it is cut.
   */
  async freeze(
    disks: string[],
    pitId: string,
    quiesce: boolean,
    scripts: FreezeScripts = {},
    warn: (message: string) => void = () => undefined,
  ): Promise<FrozenPointRecord> {
    const old = this.state.points[pitId];
    if (old) {
      if (Object.keys(old.disks).sort().join() !== [...disks].sort().join())
        throw new TrackingError(
          'Error',
          `point ${pitId} was frozen with other disks (${Object.keys(old.disks).join(', ')})`,
        );
      if (old.state === 'frozen') {
        for (const [d, pd] of Object.entries(old.disks))
          if (!(await dmInfo(snapName(d, pd.n))))
            throw new TrackingError(
              'FrozenPointLostError',
              `the snapshot of ${d} for point ${pitId} is gone`,
            );
        return old;
      }
      await this.drop(old); // interrupted before anyone could read it: freeze again
    }
    for (const d of disks)
      if (!this.state.disks[d] || !(await dmInfo(top(d))))
        throw new TrackingError('Error', `disk ${d} is not tracked: enable tracking first`);
    const point: FrozenPointRecord = { pitId, instant: '', state: 'freezing', disks: {} };
    for (const d of disks) point.disks[d] = { n: this.state.nextSnapshot++, era: 0 };
    this.state.points[pitId] = point;
    this.save();
    if (!quiesce) return this.cut(point, disks, false);
    try {
      return await withFreezeScripts({ ...scripts, pitId, warn }, () => this.cut(point, disks, true));
    } catch (err) {
      // A script failed before anything was cut: the point is forgotten (the workflow cuts a
      // crash-consistent one). Other failures keep it, so the next freeze drops what was made.
      if (err instanceof TrackingError && err.name === 'QuiesceError' && point.state !== 'frozen') {
        delete this.state.points[pitId];
        this.save();
      }
      throw err;
    }
  }

  /** Cuts a recorded point: fsfreeze (quiesce), checkpoint, suspend, snapshot, resume, thaw. */
  private async cut(point: FrozenPointRecord, disks: string[], quiesce: boolean): Promise<FrozenPointRecord> {
    const pitId = point.pitId;
    const frozenFs: string[] = [];
    /** Disks whose filesystems fsfreeze froze: suspended without freezing them again. */
    const fsFrozenOn = new Set<string>();
    // Held writes: the suspend that holds them already froze any filesystem on the disks.
    if (quiesce && !this.holds.standing() && !this.stops.standing()) {
      try {
        for (const d of disks) {
          const info = await dmInfo(top(d));
          for (const m of mountPointsOf(top(d), info?.minor ?? -1)) {
            await freezeFs(m);
            frozenFs.push(m);
            fsFrozenOn.add(d);
          }
        }
      } catch (err) {
        for (const m of frozenFs) await thawFs(m).catch(() => undefined);
        delete this.state.points[pitId];
        this.save();
        throw new TrackingError('QuiesceError', `fsfreeze failed: ${(err as Error).message}`);
      }
    }
    const stop = this.stops.standing();
    const held = stop ? { eras: stop.eras, heldAt: stop.stoppedAt } : this.holds.standing();
    const heldEra = (d: string): number | undefined => held?.eras[d];
    const unstopped = stop ? disks.filter((d) => heldEra(d) === undefined) : [];
    if (unstopped.length)
      throw new TrackingError('Error', `writes of ${unstopped.join(', ')} are not stopped`);
    if (stop) point.stopped = true;
    const cut = async (): Promise<void> => {
      const suspended: string[] = [];
      try {
        // The era must be live to take a message: checkpoint first. A write between checkpoint and
        // suspend is in this point and marked in the new era: sent again next time, never missed.
        // A held disk was checkpointed and suspended by the hold.
        for (const d of disks) {
          const pd = point.disks[d] as FrozenPointRecord['disks'][string];
          const era = heldEra(d);
          if (era === undefined) await dmMessage(top(d), 'checkpoint');
          pd.era = era ?? (await eraCurrent(top(d)));
          pd.since = this.state.disks[d]?.shippedEra;
          if (stop?.shipped) pd.none = true;
        }
        this.save();
        for (const d of disks)
          if (heldEra(d) === undefined) {
            await dmSuspend(top(d), fsFrozenOn.has(d));
            suspended.push(d);
          }
        point.instant = held?.heldAt ?? new Date().toISOString();
        for (const d of disks) {
          const disk = this.state.disks[d];
          if (disk) await makeSnapshot(d, point.disks[d]?.n ?? 0, disk.device, disk.sizeBytes);
        }
      } finally {
        for (const d of suspended) await dmResume(top(d));
        for (const m of frozenFs) await thawFs(m).catch(() => undefined);
      }
    };
    const h = this.holds.standing();
    await (stop ? this.stops.during(cut) : h ? this.holds.during(h, cut) : cut());
    point.state = 'frozen';
    this.save();
    return point;
  }

  /** Disks whose stack is alive (a planned failover stops them all). */
  async stacks(): Promise<string[]> {
    const alive: string[] = [];
    for (const d of Object.keys(this.state.disks)) if (await dmInfo(top(d))) alive.push(d);
    return alive;
  }

  sizeOf(disk: string): number {
    return this.state.disks[disk]?.sizeBytes ?? 0;
  }

  /**
   * Disks whose changes since the last shipped point are all in the log: the stack is alive and
   * a point was shipped since it was built (or its log was kept). The others need enable first.
   */
  async tracked(): Promise<string[]> {
    const out: string[] = [];
    for (const [d, disk] of Object.entries(this.state.disks))
      if (disk.shippedEra !== undefined && (await dmInfo(top(d)))) out.push(d);
    return out;
  }

  list(): string[] {
    return Object.keys(this.state.points);
  }

  /** success: the point's changes are stored, its era counts as shipped. failure: sent again later. */
  async release(pitId: string, success: boolean): Promise<{ released: boolean; fullSyncRequired: string[] }> {
    const point = this.state.points[pitId];
    if (!point) return { released: false, fullSyncRequired: [] };
    await this.drop(point);
    const lost: string[] = [];
    for (const [d, pd] of Object.entries(point.disks)) {
      const disk = this.state.disks[d];
      if (!disk || !(await dmInfo(top(d)))) lost.push(d);
      else if (success && point.state === 'frozen') {
        disk.shippedEra = Math.max(disk.shippedEra ?? 0, pd.era);
        delete disk.untrusted;
      }
    }
    if (success && point.stopped && point.state === 'frozen' && this.state.stop)
      this.state.stop.shipped = true;
    delete this.state.points[pitId];
    this.save();
    return { released: true, fullSyncRequired: lost };
  }

  /** Removes the snapshots and the stacks; a device still open keeps its name as a plain linear map. */
  async disable(): Promise<void> {
    for (const pitId of this.list()) await this.release(pitId, false);
    // A committed failover: the retired machine stays stopped; the stacks go once it resumes.
    if (this.state.stop) {
      this.state.stop.disableOnResume = true;
      return this.save();
    }
    for (const [d, disk] of Object.entries(this.state.disks)) {
      await removeStack(d, disk.device, disk.sizeBytes);
      await dropLog(d);
      delete this.state.disks[d];
      this.save();
    }
  }

  /** Byte extents the point sends for `disk`: all of it, or the era blocks written since. */
  async changes(pitId: string, disk: string, mode: 'full' | 'delta'): Promise<Array<[number, number]>> {
    const { pd, size } = this.pointDisk(pitId, disk);
    if (pd.none) return [];
    if (mode === 'full' || pd.since === undefined) return [[0, size]];
    // Stopped (a point frozen before the stop too): the suspended era takes no message, so the
    // log its suspend committed, a superset of the point's changes; or all when it may lag.
    const blocks = this.stops.standing()
      ? await this.stops.writtenSince(disk, pd.since)
      : await eraWrittenSince(top(disk), (await eraTable(top(disk))).metadataDevice, pd.since);
    return blocks ? blockExtents(blocks, size) : [[0, size]];
  }

  /** Bytes of the point's snapshot of `disk`, read into the start of `target` (the caller's, reused). */
  async readInto(
    target: Buffer,
    pitId: string,
    disk: string,
    offset: number,
    length: number,
  ): Promise<Buffer> {
    const { pd, size } = this.pointDisk(pitId, disk);
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > size)
      throw new TrackingError('Error', `read ${offset}+${length} is outside ${disk} (${size} bytes)`);
    if (length > target.length)
      throw new TrackingError('Error', `a read of at most ${target.length} bytes, not ${length}`);
    return this.readers.read(
      target.subarray(0, length),
      snapName(disk, pd.n),
      offset,
      `the snapshot of ${disk} for point ${pitId}`,
    );
  }

  /** Stopping cleanly: every change log onto the disk (era-log.ts), then say so for the next boot. */
  async stopCleanly(): Promise<void> {
    await logsToDisk(Object.keys(this.state.disks), this.stops.standing()?.disks ?? []);
    this.state.cleanShutdownBoot = bootId();
    this.save();
  }

  private pointDisk(pitId: string, disk: string): { pd: FrozenPointRecord['disks'][string]; size: number } {
    const point = this.state.points[pitId];
    const pd = point?.state === 'frozen' ? point.disks[disk] : undefined;
    const size = this.state.disks[disk]?.sizeBytes;
    if (!pd || size === undefined)
      throw new TrackingError('FrozenPointLostError', `no frozen point ${pitId} of ${disk} on this machine`);
    return { pd, size };
  }

  /** Removes a point's snapshots and copy-on-write files (its record stays with the caller). */
  private async drop(point: FrozenPointRecord): Promise<void> {
    for (const [d, pd] of Object.entries(point.disks)) {
      const name = snapName(d, pd.n);
      await this.readers.close(name);
      await dmRemove(name);
      await dropCowFile(cowFile(d, pd.n));
    }
  }
}
