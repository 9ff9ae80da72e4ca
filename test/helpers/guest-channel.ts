// The host side of the test guest's serial line protocol (test/guest/init, on ttyS1): one-line
// commands with an id, output lines `<id> | …`, then `<id> exit <code>`. Used by test-vm.ts.
import type net from 'node:net';
import { withTimeout } from '../../lib/qemu/qmp-client';

interface Pending {
  id: string;
  lines: string[];
  resolve: (r: { code: number; output: string }) => void;
  reject: (err: Error) => void;
}

/** The host side of test/guest/init's line protocol on ttyS1. */
export class GuestChannel {
  readonly ready: Promise<void>;
  private markReady: () => void = () => undefined;
  private socket: net.Socket | undefined;
  private buffered = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closed: Error | undefined;
  /** How often the guest said it was ready (again after each reboot). */
  private readies = 0;
  private readyWaiters: Array<{ count: number; resolve: () => void }> = [];

  constructor() {
    this.ready = new Promise((resolve) => (this.markReady = resolve));
  }

  attach(socket: net.Socket): void {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        this.onLine(this.buffered.slice(0, nl).replace(/\r$/, ''));
        this.buffered = this.buffered.slice(nl + 1);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.close(new Error('the guest serial connection closed (QEMU exited?)')));
  }

  run(command: string, timeoutMs: number): Promise<{ code: number; output: string }> {
    if (command.includes('\n')) return Promise.reject(new Error('a guest command must be one line'));
    if (this.closed) return Promise.reject(this.closed);
    const socket = this.socket;
    if (!socket) return Promise.reject(new Error('the guest is not connected'));
    const id = `c${this.nextId++}`;
    const reply = new Promise<{ code: number; output: string }>((resolve, reject) => {
      this.pending.set(id, { id, lines: [], resolve, reject });
    });
    socket.write(`${id} ${command}\n`);
    return withTimeout(reply, timeoutMs, () => {
      this.pending.delete(id);
      return new Error(`guest command ${id} did not answer within ${timeoutMs} ms: ${command}`);
    });
  }

  /** How often the guest has started so far (1 after boot, 2 after one reboot …). */
  get boots(): number {
    return this.readies;
  }

  /** Resolves once the guest has started `count` times in all (a reboot's readiness). */
  booted(count: number, timeoutMs: number): Promise<void> {
    if (this.readies >= count) return Promise.resolve();
    const waited = new Promise<void>((resolve) => this.readyWaiters.push({ count, resolve }));
    return withTimeout(
      waited,
      timeoutMs,
      () => new Error(`the guest did not start again within ${timeoutMs} ms`),
    );
  }

  close(err: Error): void {
    if (this.closed) return;
    this.closed = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.socket?.destroy();
  }

  private onLine(line: string): void {
    if (line === 'osr-guest-ready') {
      this.readies += 1;
      this.readyWaiters = this.readyWaiters.filter((w) =>
        w.count <= this.readies ? void w.resolve() : true,
      );
      return this.markReady();
    }
    const m = /^(\S+) (\| (.*)|exit (\d+))$/.exec(line);
    const p = m?.[1] === undefined ? undefined : this.pending.get(m[1]);
    if (!m || !p) return;
    if (m[4] === undefined) {
      p.lines.push(m[3] ?? '');
      return;
    }
    this.pending.delete(p.id);
    p.resolve({ code: Number(m[4]), output: p.lines.map((l) => `${l}\n`).join('') });
  }
}
