// Holding the machine's writes for a consistency-group cut: every tracked disk's era is
// checkpointed, then its top device (osr-<disk>) suspended: the kernel queues new I/O there and
// in-flight I/O drains, so no write is acknowledged until the hold ends. A freeze while held
// (tracker.ts) snapshots the held state without suspending or resuming anything itself. The hold
// ends at `release` or, whatever happens to the process server, after HOLD_LIMIT_MS by itself.
// Why the top and not osr-<disk>-origin: a write queued below a live era would be in flight in the
// era, whose suspend (a freeze) and messages (a change list) would then wait on the held origin.
import { performance } from 'node:perf_hooks';
import { HOLD_LIMIT_MS, type HoldOutcome, type HoldResult } from './hold-terms';
import { dmMessage, dmResume, dmSuspend, eraCurrent } from './dm';
import { TrackingError } from './errors';

export interface Hold {
  /** The era each held disk's checkpoint started: a point frozen while held ships from it. */
  eras: Record<string, number>;
  heldAt: string;
  /** Monotonic (performance.now()): a wall-clock step must not shorten or stretch a hold. */
  startedMs: number;
  expiredMs?: number;
  timer?: NodeJS.Timeout;
  /** A freeze using the hold: the release waits for it before it resumes the disks. */
  busy: Promise<unknown>;
}

/** The device-mapper calls a hold makes (dm.ts; tests give fakes). */
export interface HoldDm {
  message(device: string, message: string): Promise<unknown>;
  currentEra(device: string): Promise<number>;
  suspend(device: string): Promise<unknown>;
  resume(device: string): Promise<unknown>;
}

export const realDm: HoldDm = {
  message: dmMessage,
  currentEra: eraCurrent,
  suspend: dmSuspend,
  resume: dmResume,
};

/** Checkpoints each device's era; the era each checkpoint started, by disk. */
export async function checkpointEras(
  dm: HoldDm,
  top: (disk: string) => string,
  disks: string[],
): Promise<Record<string, number>> {
  const eras: Record<string, number> = {};
  for (const d of disks) {
    await dm.message(top(d), 'checkpoint');
    eras[d] = await dm.currentEra(top(d));
  }
  return eras;
}

/** Suspends every disk's device, or none: one that fails resumes those already suspended. */
export async function suspendAll(dm: HoldDm, top: (disk: string) => string, disks: string[]): Promise<void> {
  const suspended: string[] = [];
  try {
    for (const d of disks) {
      await dm.suspend(top(d));
      suspended.push(d);
    }
  } catch (err) {
    for (const d of suspended) await dm.resume(top(d)).catch(() => undefined);
    throw err;
  }
}

export class WriteHolds {
  private current?: Hold;
  private last?: HoldOutcome;
  private tickets = 0;
  /** Holds asked for before this ticket were cancelled by an unhold that came after them. */
  private cancelledBelow = 0;
  private inProgress: Promise<unknown> = Promise.resolve();

  private readonly dm: HoldDm;
  private readonly limitMs: number;
  private readonly log: (line: string) => void;

  constructor(
    /** The device a disk's writes go through (osr-<disk>). */
    private readonly top: (disk: string) => string,
    options: { log?: (line: string) => void; dm?: HoldDm; limitMs?: number } = {},
  ) {
    this.dm = options.dm ?? realDm;
    this.limitMs = options.limitMs ?? HOLD_LIMIT_MS;
    this.log = options.log ?? (() => undefined);
  }

  /** Taken when a hold request arrives (before it waits its turn), so a later unhold can cancel it. */
  ticket(): number {
    return ++this.tickets;
  }

  /** The hold in force (not expired), if any. */
  standing(): Hold | undefined {
    return this.current && this.current.expiredMs === undefined ? this.current : undefined;
  }

  /** Holds `disks`; a hold already standing is answered again (a retried request). */
  hold(ticket: number, disks: string[]): Promise<HoldResult> {
    const run = this.holdNow(ticket, disks);
    this.inProgress = run.catch(() => undefined);
    return run;
  }

  private async holdNow(ticket: number, disks: string[]): Promise<HoldResult> {
    if (ticket < this.cancelledBelow)
      throw new TrackingError('Error', 'the hold was cancelled (released) before it could start');
    const standing = this.standing();
    if (standing) return { disks: Object.keys(standing.eras), heldAt: standing.heldAt };
    if (!disks.length) throw new TrackingError('Error', 'no tracked disk to hold: enable tracking first');
    this.current = undefined;
    // Checkpoint while the era is live (a suspended era takes no message): a write between the
    // checkpoint and the suspend is in the point and in the new era, sent again, never missed.
    const eras = await checkpointEras(this.dm, this.top, disks);
    const heldAt = new Date().toISOString();
    const startedMs = performance.now();
    await suspendAll(this.dm, this.top, disks);
    const h: Hold = { eras, heldAt, startedMs, busy: Promise.resolve() };
    this.armLimit(h, this.limitMs);
    this.current = h;
    this.last = undefined;
    return { disks, heldAt: h.heldAt };
  }

  /** Runs a freeze of held disks; a release (or the limit) waits for it to end. */
  during<T>(h: Hold, cut: () => Promise<T>): Promise<T> {
    const run = cut();
    h.busy = run.catch(() => undefined);
    return run;
  }

  /** Lets the writes go; says whether they stayed held all along. Safe to repeat. */
  async release(): Promise<HoldOutcome> {
    this.cancelledBelow = this.tickets + 1;
    await this.inProgress;
    const h = this.current;
    if (!h) return this.last ?? { held: false, heldMs: 0, expired: false };
    this.current = undefined;
    clearTimeout(h.timer);
    if (h.expiredMs === undefined) {
      await h.busy;
      await this.resume(h);
    }
    const end = h.expiredMs ?? performance.now();
    this.last = {
      held: h.expiredMs === undefined,
      heldMs: Math.round(end - h.startedMs),
      expired: h.expiredMs !== undefined,
    };
    return this.last;
  }

  // Node's timers run on the event loop's cached clock and may fire a little before the delay
  // has passed on the monotonic one: what is left is waited again, so a hold lasts the limit.
  private armLimit(h: Hold, delayMs: number): void {
    h.timer = setTimeout(() => {
      const leftMs = this.limitMs - (performance.now() - h.startedMs);
      if (leftMs > 0) return this.armLimit(h, Math.ceil(leftMs));
      void this.expire(h).catch((err: Error) => this.log(`releasing expired hold: ${err.message}`));
    }, delayMs);
  }

  private async expire(h: Hold): Promise<void> {
    if (this.current !== h || h.expiredMs !== undefined) return;
    h.expiredMs = performance.now();
    this.log(`writes held for ${this.limitMs / 1000} s with no release: letting them go`);
    await h.busy;
    await this.resume(h);
  }

  /** Resumes every held disk, each tried even when one fails. */
  private async resume(h: Hold): Promise<void> {
    const errors: string[] = [];
    for (const d of Object.keys(h.eras))
      await this.dm.resume(this.top(d)).catch((err: Error) => errors.push(err.message));
    if (errors.length) throw new TrackingError('Error', `could not resume held disks: ${errors.join('; ')}`);
  }
}
