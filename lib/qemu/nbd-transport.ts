// The byte stream under an NBD connection: opening the socket (unix or TCP), and reading exact
// byte counts from it for one sequential consumer, into fresh buffers or straight into a target.
import * as net from 'node:net';
import { HIGH_WATER, NbdError, type NbdConnectOptions } from './nbd-protocol';

/** Buffers socket data and hands out exact byte counts to one sequential consumer. */
export class SocketReader {
  private chunks: Buffer[] = [];
  private available = 0;
  private waiter: { need: number; resolve: () => void; reject: (err: Error) => void } | undefined;
  private ended: Error | undefined;

  constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.available += chunk.length;
      if (this.available > HIGH_WATER) socket.pause();
      this.wake();
    });
  }

  end(err: Error): void {
    if (this.ended) return;
    this.ended = err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }

  async need(n: number): Promise<void> {
    if (this.available >= n) return;
    if (this.ended) throw this.ended;
    if (this.socket.isPaused()) this.socket.resume();
    await new Promise<void>((resolve, reject) => {
      this.waiter = { need: n, resolve, reject };
    });
  }

  async read(n: number): Promise<Buffer> {
    await this.need(n);
    const out = Buffer.allocUnsafe(n);
    this.copyOut(out, 0, n);
    return out;
  }

  async readInto(target: Buffer, pos: number, n: number): Promise<void> {
    await this.need(n);
    this.copyOut(target, pos, n);
  }

  async skip(n: number): Promise<void> {
    await this.need(n);
    this.copyOut(undefined, 0, n);
  }

  private copyOut(target: Buffer | undefined, pos: number, n: number): void {
    let left = n;
    while (left > 0) {
      const head = this.chunks[0];
      if (!head) throw new Error('SocketReader: buffer accounting broken');
      const take = Math.min(left, head.length);
      if (target) head.copy(target, pos + (n - left), 0, take);
      if (take === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(take);
      left -= take;
    }
    this.available -= n;
    if (this.available < HIGH_WATER / 2 && this.socket.isPaused()) this.socket.resume();
  }

  private wake(): void {
    const w = this.waiter;
    if (w && this.available >= w.need) {
      this.waiter = undefined;
      w.resolve();
    }
  }
}

export function openSocket(options: NbdConnectOptions, label: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = options.socket
      ? net.createConnection({ path: options.socket })
      : net.createConnection({ host: options.host ?? 'localhost', port: options.port ?? 10809 });
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'ENOENT'
          ? 'no such socket'
          : err.code === 'ECONNREFUSED'
            ? 'connection refused'
            : err.message;
      reject(new NbdError(`${label}: cannot connect (${why}): is the NBD server running?`));
    });
  });
}
