// A token bucket in bytes, shared by every sender that draws from it: `take(n)` resolves when the
// n bytes may go. It starts empty and holds at most `burstSeconds` of the rate, so the rate seen
// on the wire over any few seconds stays at the limit; a take larger than the bucket goes into
// debt and the following takes wait it off. The rate can change at any time (a policy change while
// transfers run); waiting takes then follow the new rate. Rate 0 (or below): no limit.
export class TokenBucket {
  #bytesPerSecond: number;
  #tokens = 0;
  #at = performance.now();
  /** Takes are served in order: a large one does not starve behind a stream of small ones. */
  #queue: Promise<void> = Promise.resolve();

  constructor(
    bitsPerSecond: number,
    private readonly burstSeconds = 0.25,
  ) {
    this.#bytesPerSecond = bitsPerSecond / 8;
  }

  get bitsPerSecond(): number {
    return this.#bytesPerSecond * 8;
  }

  setRate(bitsPerSecond: number): void {
    this.#refill();
    this.#bytesPerSecond = bitsPerSecond / 8;
  }

  take(bytes: number): Promise<void> {
    const turn = this.#queue.then(() => this.#wait(bytes));
    this.#queue = turn.catch(() => undefined);
    return turn;
  }

  async #wait(bytes: number): Promise<void> {
    for (;;) {
      if (this.#bytesPerSecond <= 0) return;
      this.#refill();
      if (this.#tokens >= 0) {
        this.#tokens -= bytes;
        return;
      }
      // Re-checked after the sleep: the rate may have changed meanwhile. At most 1 s per sleep.
      const ms = Math.min(1000, (-this.#tokens / this.#bytesPerSecond) * 1000);
      await new Promise((r) => setTimeout(r, Math.max(1, ms)));
    }
  }

  #refill(): void {
    const now = performance.now();
    const cap = this.#bytesPerSecond * this.burstSeconds;
    this.#tokens = Math.min(cap, this.#tokens + ((now - this.#at) / 1000) * this.#bytesPerSecond);
    this.#at = now;
  }
}
