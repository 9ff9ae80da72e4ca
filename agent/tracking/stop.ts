// A planned failover stops the machine's writes until the failover ends: every tracked disk's top
// device (osr-<disk>) is checkpointed and suspended, as a group hold does (hold.ts), but with no
// time limit, and the stop is written in the tracking state: an agent restart (a crash, an
// upgrade's switch, SIGTERM) leaves the disks suspended, and a stack rebuilt after a reboot is
// stopped again as soon as the agent runs. Only `resume-writes` lets the writes go (the failed or
// cancelled failover's teardown, or `osr agent resume`). Points frozen while stopped
// (tracker.ts) send the whole disk: the suspended era takes no message, so no change list.
import { TrackingError } from './errors';
import { checkpointEras, realDm, suspendAll, type HoldDm } from './hold';
import type { ResumeResult, StopResult } from './hold-terms';
import type { WriteStopRecord } from './store';

export class WriteStops {
  /** A freeze using the stop: the resume waits for it. */
  private busy: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly top: (disk: string) => string,
    /** The tracker's state, where the stop is kept, and its durable write. */
    private readonly state: () => { stop?: WriteStopRecord },
    private readonly save: () => void,
    private readonly dm: HoldDm = realDm,
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

  /** Runs a freeze of the stopped disks; a resume waits for it to end. */
  during<T>(cut: () => Promise<T>): Promise<T> {
    const run = cut();
    this.busy = run.catch(() => undefined);
    return run;
  }

  /** Lets the writes go. Safe to repeat: with no stop standing it answers `resumed: false`. */
  async resume(): Promise<ResumeResult> {
    const s = this.standing();
    if (!s) return { resumed: false, stoppedMs: 0 };
    await this.busy;
    const errors: string[] = [];
    for (const d of s.disks)
      await this.dm.resume(this.top(d)).catch((err: Error) => errors.push(err.message));
    if (errors.length)
      throw new TrackingError('Error', `could not resume stopped disks: ${errors.join('; ')}`);
    this.set(undefined);
    return { resumed: true, stoppedMs: Date.now() - s.stoppedMs };
  }
}
