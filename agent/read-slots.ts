// The agent's memory for disk reads: a fixed number of buffers, each as large as the largest read
// a request may ask, reused from read to read. A read waits for a free one, and gives it back
// only once its frame is written to the socket: however many reads the process server asks at
// once (8 lanes of 4 MiB segments, or hundreds of 64 KiB blocks), the agent holds `count`
// buffers, and the TLS socket's queue never holds more than their frames (back-pressure).

export class ReadSlots {
  private readonly free: Buffer[] = [];
  private readonly waiting: Array<(buf: Buffer) => void> = [];
  private made = 0;

  constructor(
    private readonly count: number,
    private readonly bytes: number,
  ) {}

  /** Runs `use` with a buffer of the pool; the buffer is back once `use` settles. */
  async with<T>(use: (buf: Buffer) => Promise<T>): Promise<T> {
    const buf = await this.take();
    try {
      return await use(buf);
    } finally {
      const next = this.waiting.shift();
      if (next) next(buf);
      else this.free.push(buf);
    }
  }

  /** Buffers made so far (at most `count`). */
  get allocated(): number {
    return this.made;
  }

  private take(): Promise<Buffer> {
    const buf = this.free.pop();
    if (buf) return Promise.resolve(buf);
    // Made on first use: an agent that never sends keeps none. Outside V8's heap (allocUnsafeSlow).
    if (this.made < this.count) return Promise.resolve((this.made++, Buffer.allocUnsafeSlow(this.bytes)));
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}
