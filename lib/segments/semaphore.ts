// Bounds how many of a kind of work run at once (requests to storage, segments being read and
// encoded); the ones over the bound start in the order they asked.

/** Counts work in flight; FIFO. */
export class Semaphore {
  #free: number;
  readonly #waiting: (() => void)[] = [];
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1)
      throw new RangeError(`a semaphore needs a size >= 1, got ${size}`);
    this.#free = size;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}
