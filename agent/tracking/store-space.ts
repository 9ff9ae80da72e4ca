// What the agent tells its process server about the room of its point store (protocol.ts
// StoreReport): the free space of the filesystem holding the tracking folder, the most room a
// recent point's copy-on-write store took (measured when the point is dropped, so OSR can warn
// before the next one runs out), and the points given up since the last kept one because their
// store could not grow. One agent process, one record: kept here, not in the tracking state (a
// restart forgets the sizes; the overflow episode ends with the next kept point anyway).
import fs from 'node:fs';
import path from 'node:path';
import type { StoreReport } from './store-terms';
import { trackingDir } from './store';

/** The sizes of this many recent points count for the largest one. */
export const RECENT_POINTS = 24;

export class StoreSpace {
  private readonly uses: number[] = [];
  private overflow: StoreReport['overflow'];
  private wake: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(
    private readonly dir: () => string = trackingDir,
    private readonly statfs: (dir: string) => { bavail: number; blocks: number; bsize: number } = (d) =>
      fs.statfsSync(d),
  ) {}

  /** A point's copy-on-write store, as it is dropped: the room it took on the filesystem. */
  notePointUse(bytes: number): void {
    this.uses.push(bytes);
    if (this.uses.length > RECENT_POINTS) this.uses.shift();
  }

  /** A point was given up: its store could not grow (its reads fail alike: counted once). */
  noteOverflow(message: string, now = new Date()): void {
    const at = now.toISOString();
    const last = this.overflow;
    const count = (last?.count ?? 0) + (last?.message === message ? 0 : 1);
    this.overflow = { since: last?.since ?? at, at, count, message };
    if (count !== last?.count) this.notify();
  }

  /** A point was kept (released after it was stored): the overflow episode is over. */
  noteKeptPoint(): void {
    if (!this.overflow) return;
    this.overflow = undefined;
    this.notify();
  }

  /**
   * Resolves at the next point given up, or the first kept after: the connection then sends its
   * heartbeat (and this report) at once, not up to 15 s later. One promise until then, however
   * often it is asked for.
   */
  changed(): Promise<void> {
    if (!this.wake) {
      let resolve = (): void => undefined;
      const promise = new Promise<void>((r) => (resolve = r));
      this.wake = { promise, resolve };
    }
    return this.wake.promise;
  }

  private notify(): void {
    this.wake?.resolve();
    this.wake = undefined;
  }

  /**
   * The report to send; undefined when the folder's filesystem cannot be read. Before the folder
   * exists (nothing tracked yet), the filesystem that will hold it: its nearest existing parent.
   */
  report(): StoreReport | undefined {
    const dir = this.dir();
    let s: { bavail: number; blocks: number; bsize: number } | undefined;
    for (let d = dir; !s; d = path.dirname(d)) {
      try {
        s = this.statfs(d);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || d === path.dirname(d)) return undefined;
      }
    }
    return {
      dir,
      freeBytes: s.bavail * s.bsize,
      sizeBytes: s.blocks * s.bsize,
      ...(this.uses.length ? { largestPointBytes: Math.max(...this.uses) } : {}),
      ...(this.overflow ? { overflow: { ...this.overflow } } : {}),
    };
  }
}

/** The agent's one record (the tracker's point store and the connection share it). */
export const storeSpace = new StoreSpace();

/** The room a sparse file takes on its filesystem (its allocated blocks), 0 if it is gone. */
export function allocatedBytes(file: string): number {
  try {
    return fs.statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}
