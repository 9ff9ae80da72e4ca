// A planned failover stops the machine's writes until the failover ends: every tracked disk's top
// device (osr-<disk>) is checkpointed and suspended, as a group hold does (hold.ts), but with no
// time limit, and the stop is written in the tracking state: an agent restart (a crash, an
// upgrade's switch, SIGTERM) leaves the disks suspended, and a stack rebuilt after a reboot is
// stopped again as soon as the agent runs. Only `resume-writes` lets the writes go (the failed or
// cancelled failover's teardown, or `osr agent resume`). A point's changes while stopped
// (tracker.ts) come from the era metadata the stop's suspend committed (writtenSince), not from a
// metadata snapshot: the suspended era takes no message.
import { dmInfo, eraTable, eraWrittenSinceCommitted } from './dm';
import { TrackingError } from './errors';
import { checkpointEras, realDm, suspendAll, type HoldDm } from './hold';
import type { ResumeResult, StopResult } from './hold-terms';
import { bootId, type WriteStopRecord } from './store';

/** The device-mapper calls a stop makes besides a hold's (dm.ts; tests give fakes). */
export interface StopDm extends HoldDm {
  suspended(device: string): Promise<boolean>;
  /** Era blocks written since `since`, from the committed metadata of suspended `device`. */
  committedWrittenSince(device: string, since: number): Promise<Array<[number, number]>>;
}

export const realStopDm: StopDm = {
  ...realDm,
  suspended: async (device) => (await dmInfo(device))?.suspended === true,
  committedWrittenSince: async (device, since) =>
    eraWrittenSinceCommitted((await eraTable(device)).metadataFile, since),
};

export class WriteStops {
  /** A freeze using the stop: the resume waits for it. */
  private busy: Promise<unknown> = Promise.resolve();
  /** A resume has begun: nothing new may rely on the disks staying suspended. */
  private resuming = false;

  constructor(
    private readonly top: (disk: string) => string,
    /** The tracker's state, where the stop is kept, and its durable write. */
    private readonly state: () => { stop?: WriteStopRecord },
    private readonly save: () => void,
    private readonly dm: StopDm = realStopDm,
  ) {}

  standing(): WriteStopRecord | undefined {
    return this.state().stop;
  }

  /** Stops `disks`; a stop already standing is answered again (a retried request). */
  async stop(disks: string[]): Promise<StopResult> {
    const standing = this.standing();
    if (standing) return { disks: standing.disks, stoppedAt: standing.stoppedAt };
    if (!disks.length) throw new TrackingError('Error', 'no tracked disk to stop: enable tracking first');
    const eras = await checkpointEras(this.dm, this.top, disks);
    await suspendAll(this.dm, this.top, disks);
    // Recorded once every disk is suspended: an agent killed before this resumes them as it starts.
    const record: WriteStopRecord = {
      disks,
      eras,
      stoppedAt: new Date().toISOString(),
      stoppedMs: Date.now(),
      bootId: bootId(),
    };
    this.set(record);
    return { disks, stoppedAt: record.stoppedAt };
  }

  /** The agent started again: every stopped disk is suspended (again, if a reboot rebuilt it). */
  async reapply(): Promise<void> {
    const s = this.standing();
    if (!s) return;
    for (const d of s.disks) await this.dm.suspend(this.top(d)); // a suspended device: a no-op
    // Writes may have reached a rebuilt disk before the agent ran: the next point sends it whole.
    if (s.shipped) this.set({ ...s, shipped: undefined });
  }

  private set(record: WriteStopRecord | undefined): void {
    this.state().stop = record;
    this.save();
  }

  /** Runs a freeze of the stopped disks (or a read of their log); a resume waits for it to end. */
  during<T>(cut: () => Promise<T>): Promise<T> {
    const run = cut();
    this.busy = Promise.all([this.busy, run.catch(() => undefined)]);
    return run;
  }

  /**
   * The era blocks of stopped `disk` written in era `since` or later, up to the stop: its suspend
   * archived the current era and committed the metadata, which nothing writes until the resume.
   * Undefined (the point sends the whole disk) when that log may miss a write: the stack was
   * rebuilt in another boot than the stop's (a write may have reached the disk before the agent
   * ran), the disk is not suspended any more, or a resume has begun.
   */
  async writtenSince(disk: string, since: number): Promise<Array<[number, number]> | undefined> {
    const s = this.standing();
    if (!s?.disks.includes(disk) || s.bootId !== bootId() || this.resuming) return undefined;
    return this.during(async () => {
      if (!(await this.dm.suspended(this.top(disk)))) return undefined;
      return this.dm.committedWrittenSince(this.top(disk), since);
    });
  }

  /** Lets the writes go. Safe to repeat: with no stop standing it answers `resumed: false`. */
  async resume(): Promise<ResumeResult> {
    const s = this.standing();
    if (!s) return { resumed: false, stoppedMs: 0 };
    this.resuming = true;
    try {
      await this.busy;
      await this.resumeAll(s);
    } finally {
      this.resuming = false;
    }
    return { resumed: true, stoppedMs: Date.now() - s.stoppedMs };
  }

  private async resumeAll(s: WriteStopRecord): Promise<void> {
    const errors: string[] = [];
    for (const d of s.disks)
      await this.dm.resume(this.top(d)).catch((err: Error) => errors.push(err.message));
    if (errors.length)
      throw new TrackingError('Error', `could not resume stopped disks: ${errors.join('; ')}`);
    this.set(undefined);
  }
}
