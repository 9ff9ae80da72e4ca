// The process server's spool: a bound on the bytes of segments it has read from sources and not yet
// stored in the cache container, across every transfer it runs. A lane takes room for a segment
// before it reads the segment's blocks over NBD and gives it back once the segment's upload has
// succeeded or failed for good. When storage is slow or throttled, uploads retry with backoff and
// keep their room, the gate fills, and lanes stop reading: intake pauses instead of buffering
// without bound. Nothing is dropped: what is not read yet stays in the frozen point (and the
// cycle's plan in the cache), and writes made since the freeze stay in the source's dirty bitmap
// for the next cycle. When uploads go through again, room comes back and reading resumes.
//
// One gate per process (BlockPipeline's maxBytesInFlight is the same bound for the encode stage
// only; the gate covers read → encode → upload, so the pipeline never waits behind it).
export interface IntakeGateStats {
  capacityBytes: number;
  heldBytes: number;
  peakHeldBytes: number;
  waiting: number;
  /** Episodes during which a lane had to wait for room, and their total length. */
  pauses: number;
  pausedMs: number;
}

export interface IntakeGateEvents {
  /** The gate is full and a lane waits: intake paused. */
  onPause?: (stats: IntakeGateStats) => void;
  /** Nobody waits any more: intake resumed after `pausedMs`. */
  onResume?: (stats: IntakeGateStats, pausedMs: number) => void;
}

export class IntakeGate {
  readonly capacityBytes: number;
  #held = 0;
  #peak = 0;
  #pauses = 0;
  #pausedMs = 0;
  #pausedSince: number | undefined;
  readonly #waiters: Array<{ bytes: number; resolve: () => void }> = [];
  readonly #events: IntakeGateEvents;

  constructor(capacityBytes: number, events: IntakeGateEvents = {}) {
    if (!Number.isSafeInteger(capacityBytes) || capacityBytes <= 0)
      throw new RangeError(`capacityBytes must be a positive integer, got ${capacityBytes}`);
    this.capacityBytes = capacityBytes;
    this.#events = events;
  }

  /** Waits for room for `bytes` (FIFO; a job larger than the gate waits until the gate is empty). */
  async acquire(bytes: number): Promise<void> {
    const need = Math.min(bytes, this.capacityBytes);
    if (this.#waiters.length === 0 && this.#held + need <= this.capacityBytes) {
      this.#take(need);
      return;
    }
    if (this.#pausedSince === undefined) {
      this.#pausedSince = Date.now();
      this.#pauses++;
      // Counted as waiting before the event, so the event shows the lane that waits.
      const wait = new Promise<void>((resolve) => this.#waiters.push({ bytes: need, resolve }));
      this.#events.onPause?.(this.stats());
      return wait;
    }
    return new Promise<void>((resolve) => this.#waiters.push({ bytes: need, resolve }));
  }

  release(bytes: number): void {
    this.#held -= Math.min(bytes, this.capacityBytes);
    for (let head = this.#waiters[0]; head !== undefined; head = this.#waiters[0]) {
      if (this.#held + head.bytes > this.capacityBytes) break;
      this.#waiters.shift();
      this.#take(head.bytes);
      head.resolve();
    }
    if (this.#waiters.length === 0 && this.#pausedSince !== undefined) {
      const paused = Date.now() - this.#pausedSince;
      this.#pausedMs += paused;
      this.#pausedSince = undefined;
      this.#events.onResume?.(this.stats(), paused);
    }
  }

  /** Runs `fn` holding room for `bytes`; the room is given back however `fn` ends. */
  async with<T>(bytes: number, fn: () => Promise<T>): Promise<T> {
    await this.acquire(bytes);
    try {
      return await fn();
    } finally {
      this.release(bytes);
    }
  }

  stats(): IntakeGateStats {
    return {
      capacityBytes: this.capacityBytes,
      heldBytes: this.#held,
      peakHeldBytes: this.#peak,
      waiting: this.#waiters.length,
      pauses: this.#pauses,
      pausedMs: this.#pausedMs + (this.#pausedSince === undefined ? 0 : Date.now() - this.#pausedSince),
    };
  }

  #take(bytes: number): void {
    this.#held += bytes;
    if (this.#held > this.#peak) this.#peak = this.#held;
  }
}
