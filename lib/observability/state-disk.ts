// The process server's state disk: the fleecing overlays of frozen points (the old data of every
// block the machine rewrites while a point is read) grow there. When it is full QEMU gives the
// point up and lets the machine's writes go on (lib/qemu/fleecing-graph.ts); this raises the
// process server's `state-disk-full` alert, with the fix, while the disk is nearly full or since a
// point was given up, until a later point of that machine is kept (space is back).
import fs from 'node:fs';
import type { ServerAlert } from './server-health';

const MiB = 1024 * 1024;
/** A given-up point stops alerting after this long even if no later point was kept here. */
const GIVEN_UP_ALERT_MS = 3600_000;

export interface DiskSpace {
  freeBytes: number;
  sizeBytes: number;
}

/** Free space of the filesystem holding `dir` (for an unprivileged process: what it may use). */
export function diskSpace(dir: string): DiskSpace {
  const s = fs.statfsSync(dir);
  return { freeBytes: s.bavail * s.bsize, sizeBytes: s.blocks * s.bsize };
}

const givenUp = new Map<string, { pitId: string; at: number; reason: string }>();

/** A point of `machine` was given up by its source (its fleecing overlay could not grow). */
export function noteGivenUpPoint(machine: string, pitId: string, reason: string, at = Date.now()): void {
  givenUp.set(machine, { pitId, at, reason });
}

/** A point of `machine` was kept (released after it was published): its episode is over. */
export function noteKeptPoint(machine: string): void {
  givenUp.delete(machine);
}

export class StateDiskWatch {
  #since: number | undefined;

  constructor(
    /** The folder the fleecing overlays are written under. */
    private readonly dir: string,
    /** Alert when less than this share of the disk is free. */
    private readonly freeRatio: number,
    private readonly who: string,
    private readonly space: (dir: string) => DiskSpace = diskSpace,
  ) {}

  update(now: number): ServerAlert[] {
    let space: DiskSpace;
    try {
      space = this.space(existingAncestor(this.dir));
    } catch {
      return [];
    }
    for (const [machine, g] of givenUp) if (now - g.at > GIVEN_UP_ALERT_MS) givenUp.delete(machine);
    const low = space.freeBytes < this.freeRatio * space.sizeBytes;
    if (!low && givenUp.size === 0) {
      this.#since = undefined;
      return [];
    }
    this.#since ??= now;
    const points = [...givenUp].map(([m, g]) => `${m} (point ${g.pitId}, ${new Date(g.at).toISOString()})`);
    const message =
      `${this.who}: its state disk (${this.dir}) has ${mib(space.freeBytes)} MiB free of ${mib(space.sizeBytes)} MiB` +
      ` (alert under ${Math.round(this.freeRatio * 100)} %). Frozen points keep the old data of rewritten blocks there` +
      (points.length
        ? `; points given up for lack of room (the machines' writes went on, their changes go with the next cycle): ${points.join(', ')}`
        : '; when it is full, the points being read are given up and their cycles fail') +
      '. Fix: free space on that disk or give the process server a larger one (stateDir, OSR_STATE_DIR).';
    // A point given up is news even within an episode: a new id, so the notifier sends it too.
    const lastGivenUp = Math.max(0, ...[...givenUp.values()].map((g) => g.at));
    return [
      {
        id: `state-disk-full-${this.#since}${lastGivenUp ? `-${lastGivenUp}` : ''}`,
        kind: 'state-disk-full',
        severity: givenUp.size > 0 ? 'critical' : 'warning',
        at: new Date(this.#since).toISOString(),
        message,
      },
    ];
  }
}

function existingAncestor(dir: string): string {
  let d = dir;
  while (!fs.existsSync(d) && d !== '/') d = d.slice(0, Math.max(1, d.lastIndexOf('/')));
  return d;
}

function mib(bytes: number): number {
  return Math.round(bytes / MiB);
}
