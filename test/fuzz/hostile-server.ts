// A unix-socket server that answers each connection with a prepared script, in turns: each turn
// is written once the client has sent enough (bytes or lines), in pieces one event-loop turn
// apart, whatever the client actually said. A client that goes quiet before the next turn is
// hung up on after a moment, as a server that gives up would. The peer the network-facing
// clients are fuzzed against.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface Turn {
  /** Written once the client has sent at least this many bytes (or lines), 0 for at once. */
  after: number;
  pieces: Buffer[];
}

export class HostileServer {
  readonly socketPath: string;
  #server: net.Server | undefined;
  #turns: Turn[] = [];
  #unit: 'bytes' | 'lines' = 'bytes';
  readonly #dir: string;
  readonly #open = new Set<net.Socket>();

  constructor(name: string) {
    this.#dir = fs.mkdtempSync(path.join(os.tmpdir(), `osr-fz-${name}-`));
    this.socketPath = path.join(this.#dir, 's');
  }

  async start(): Promise<void> {
    this.#server = net.createServer((socket) => this.#serve(socket));
    await new Promise<void>((resolve) => this.#server!.listen(this.socketPath, resolve));
  }

  /** What the next connection receives; `unit` is what Turn.after counts. */
  answer(turns: Turn[], unit: 'bytes' | 'lines'): void {
    this.#turns = turns;
    this.#unit = unit;
  }

  #serve(socket: net.Socket): void {
    this.#open.add(socket);
    socket.on('close', () => this.#open.delete(socket));
    socket.on('error', () => undefined); // the client may hang up first
    const turns = [...this.#turns];
    const unit = this.#unit;
    let received = 0;
    let writing = false;
    let idle: NodeJS.Timeout | undefined;
    const hangUpLater = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => socket.end(), 50);
    };
    const pump = (): void => {
      if (writing || socket.destroyed) return;
      const next = turns[0];
      if (next === undefined) return void socket.end();
      if (received < next.after) return hangUpLater();
      turns.shift();
      writing = true;
      clearTimeout(idle);
      const write = (i: number): void => {
        if (socket.destroyed) return;
        if (i >= next.pieces.length) {
          writing = false;
          return pump();
        }
        socket.write(next.pieces[i]!, () => setImmediate(() => write(i + 1)));
      };
      write(0);
    };
    socket.on('data', (chunk: Buffer) => {
      received += unit === 'bytes' ? chunk.length : chunk.toString('latin1').split('\n').length - 1;
      pump();
    });
    socket.on('close', () => clearTimeout(idle));
    pump();
  }

  async stop(): Promise<void> {
    for (const s of this.#open) s.destroy();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    fs.rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** Cuts bytes into pieces of random sizes, as a network would deliver them. */
export function split(bytes: Buffer, pieceOf: () => number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0; at < bytes.length; ) {
    const n = Math.max(1, pieceOf());
    pieces.push(bytes.subarray(at, at + n));
    at += n;
  }
  return pieces;
}
