// A small QMP (QEMU Machine Protocol) client: JSON lines over a unix socket. Used to drive
// dirty bitmaps, fleecing jobs and NBD exports of a qemu-system VM or a qemu-storage-daemon.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import * as net from 'node:net';
import { countRejection } from '../observability/rejections';

// QEMU's longest replies (query-block of many disks) are far below this; a line without an end
// past it is a broken or hostile monitor, not something to buffer without limit.
const MAX_LINE_CHARS = 16 * 1024 * 1024;
// QEMU's event names: upper case and underscores. Anything else (e.g. "error", which
// EventEmitter would throw on) is not emitted under its own name.
const EVENT_NAME = /^[A-Z][A-Z0-9_]*$/;

/** An error answered by QEMU itself: `errorClass` is QMP's class (GenericError, DeviceNotFound…). */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = 'QmpError';
  }
}

export type QmpProtocolErrorKind =
  | 'closed'
  | 'no-greeting'
  | 'not-qmp'
  | 'not-json'
  | 'not-object'
  | 'unexpected-id'
  | 'line-too-long';

/** The monitor broke the protocol or the connection ended: nothing QEMU answered. */
export class QmpProtocolError extends Error {
  constructor(
    readonly kind: QmpProtocolErrorKind,
    message: string,
    count = true,
  ) {
    super(message);
    this.name = 'QmpProtocolError';
    if (count && kind !== 'closed' && kind !== 'no-greeting') countRejection('qmp', kind, message);
  }
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpConnectOptions {
  /** How long to wait for the greeting; QEMU serves one client per monitor, others wait silently. */
  greetingTimeoutMs?: number;
}

interface Pending {
  id: number;
  command: string;
  args: Record<string, unknown> | undefined;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

export interface QmpVersion {
  major: number;
  minor: number;
  micro: number;
  package: string;
}

/**
 * Emits `event` (QmpEvent) for every asynchronous QMP event, `<EVENT_NAME>` (QmpEvent) for
 * each name, and `close` when the connection ends.
 */
export class QmpClient extends EventEmitter {
  /** QEMU version from the greeting. */
  version: QmpVersion = { major: 0, minor: 0, micro: 0, package: '' };
  private buffered = '';
  private nextId = 1;
  private inFlight: Pending | undefined;
  private readonly queue: Pending[] = [];
  private closedError: QmpProtocolError | undefined;
  private greeting: ((value: unknown) => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly socketPath: string,
  ) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) =>
      this.fail(new QmpProtocolError('closed', `QMP connection to ${socketPath} failed: ${err.message}`)),
    );
    socket.on('close', () => {
      this.fail(new QmpProtocolError('closed', `QMP connection to ${socketPath} closed`));
      this.emit('close');
    });
  }

  /** Connects, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const socket = await openSocket(socketPath);
    const client = new QmpClient(socket, socketPath);
    const timeoutMs = options.greetingTimeoutMs ?? 10_000;
    try {
      const greeting = await withTimeout(
        new Promise<unknown>((resolve, reject) => {
          client.greeting = resolve;
          client.once('close', () =>
            reject(
              client.closedError ?? new QmpProtocolError('closed', `QMP connection to ${socketPath} closed`),
            ),
          );
        }),
        timeoutMs,
        () =>
          new QmpProtocolError(
            'no-greeting',
            `QMP socket ${socketPath} accepted the connection but sent no greeting within ${timeoutMs} ms: ` +
              'another client probably holds this monitor (QEMU serves one client per monitor socket)',
          ),
      );
      const qmp = (greeting as { QMP?: { version?: { qemu?: Partial<QmpVersion>; package?: string } } }).QMP;
      const v = qmp?.version;
      client.version = {
        major: v?.qemu?.major ?? 0,
        minor: v?.qemu?.minor ?? 0,
        micro: v?.qemu?.micro ?? 0,
        package: v?.package ?? '',
      };
      await client.execute('qmp_capabilities');
      return client;
    } catch (err) {
      client.socket.destroy();
      throw err;
    }
  }

  /** Runs one command; resolves with its `return` value or rejects with a QmpError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = {
        id: this.nextId++,
        command,
        args,
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      this.queue.push(pending);
      this.sendNext();
    });
  }

  /** Waits for the next event of that name matching `filter`, or rejects after `timeoutMs`. */
  waitForEvent(name: string, filter: (e: QmpEvent) => boolean, timeoutMs: number): Promise<QmpEvent> {
    return new Promise<QmpEvent>((resolve, reject) => {
      const onEvent = (e: QmpEvent): void => {
        if (!filter(e)) return;
        cleanup();
        resolve(e);
      };
      const onClose = (): void => {
        cleanup();
        reject(this.closedError ?? new Error('QMP closed'));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no QMP event ${name} within ${timeoutMs} ms on ${this.socketPath}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off(name, onEvent);
        this.off('close', onClose);
      };
      this.on(name, onEvent);
      this.once('close', onClose);
    });
  }

  /** Ends the connection; outstanding commands are rejected. */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
      // A peer that never closes its side must not keep us waiting.
      setTimeout(() => this.socket.destroy(), 1000).unref();
    });
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  // One command on the wire at a time: QEMU answers in order anyway, and a reply whose id is
  // not the one in flight then means a broken stream rather than a guess.
  private sendNext(): void {
    if (this.inFlight || this.closedError) return;
    const next = this.queue.shift();
    if (!next) return;
    this.inFlight = next;
    const msg: Record<string, unknown> = { execute: next.command, id: next.id };
    if (next.args !== undefined) msg.arguments = next.args;
    this.socket.write(JSON.stringify(msg) + '\n');
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    // A QMP monitor greets with a JSON object; anything else is another kind of socket.
    const start = this.greeting ? this.buffered.slice(0, 4096).trimStart() : '';
    if (start.length > 0 && !start.startsWith('{')) {
      const what = start.startsWith('NBDMAGIC')
        ? 'an NBD server socket, not a QMP monitor: give it as --nbd, and the QMP monitor socket as --qmp'
        : `not a QMP monitor (it greeted with ${JSON.stringify(start.slice(0, 20))}): give --qmp the socket of the VM's or qemu-storage-daemon's QMP monitor`;
      return this.broken('not-qmp', what, `${this.socketPath} is `);
    }
    // Only the new chunk can hold the end of the line: scanning the whole buffer on every chunk
    // would make a long line cost its length squared.
    if (chunk.indexOf('\n') < 0) {
      if (this.buffered.length > MAX_LINE_CHARS) {
        this.buffered = '';
        this.broken('line-too-long', `sent a line longer than ${MAX_LINE_CHARS} characters without its end`);
      }
      return;
    }
    let nl: number;
    while (!this.closedError && (nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return this.broken('not-json', `sent a line that is not JSON: ${line.slice(0, 200)}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      return this.broken('not-object', `sent a line that is not a JSON object: ${line.slice(0, 200)}`);
    const msg = parsed as Record<string, unknown>;
    if ('QMP' in msg) {
      this.greeting?.(msg);
      this.greeting = undefined;
      return;
    }
    if (typeof msg.event === 'string') {
      const data = msg.data;
      const t = msg.timestamp as Partial<QmpEvent['timestamp']> | null | undefined;
      const event: QmpEvent = {
        event: msg.event,
        data:
          typeof data === 'object' && data !== null && !Array.isArray(data)
            ? (data as Record<string, unknown>)
            : {},
        timestamp: {
          seconds: typeof t?.seconds === 'number' ? t.seconds : 0,
          microseconds: typeof t?.microseconds === 'number' ? t.microseconds : 0,
        },
      };
      this.emit('event', event);
      if (EVENT_NAME.test(event.event)) this.emit(event.event, event);
      return;
    }
    const pending = this.inFlight;
    if (!pending || msg.id !== pending.id) {
      return this.broken('unexpected-id', `answered id ${String(msg.id)} while none or another was pending`);
    }
    this.inFlight = undefined;
    if ('error' in msg) {
      const e = (typeof msg.error === 'object' && msg.error !== null ? msg.error : {}) as Record<
        string,
        unknown
      >;
      const text = (v: unknown, fallback: string): string => (typeof v === 'string' ? v : fallback);
      pending.reject(
        new QmpError(pending.command, text(e.class, 'GenericError'), text(e.desc, 'unknown error')),
      );
    } else {
      pending.resolve(msg.return);
    }
    this.sendNext();
  }

  /** The monitor broke the protocol: everything pending fails with a typed error, the connection ends. */
  private broken(kind: QmpProtocolErrorKind, what: string, prefix = `QMP ${this.socketPath} `): void {
    this.fail(new QmpProtocolError(kind, `${prefix}${what}`));
    this.socket.destroy();
  }

  private fail(err: QmpProtocolError): void {
    if (this.closedError) return;
    this.closedError = err;
    const all = this.inFlight ? [this.inFlight, ...this.queue] : [...this.queue];
    this.inFlight = undefined;
    this.queue.length = 0;
    // Each waiting command gets the same kind, uncounted: the rejection was counted once.
    for (const p of all)
      p.reject(new QmpProtocolError(err.kind, `${err.message} (while running ${p.command})`, false));
  }
}

function openSocket(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: socketPath });
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      let kind = '';
      try {
        const stat = fs.statSync(socketPath);
        if (!stat.isSocket()) kind = stat.isDirectory() ? 'a directory' : 'a regular file';
      } catch {
        // gone or unreadable: the error code says enough
      }
      const why = kind
        ? `it is ${kind}, not a socket`
        : err.code === 'ENOENT'
          ? 'no such socket'
          : err.code === 'ECONNREFUSED'
            ? 'connection refused: the process that made it is gone'
            : err.message;
      reject(
        new Error(
          `no QMP socket at ${socketPath} (${why}): is the VM/storage daemon running with ` +
            '--chardev socket,id=…,path=…,server=on,wait=off and --monitor chardev=… (or -qmp unix:…,server=on)?',
        ),
      );
    });
  });
}

/** Rejects with `onTimeout()` when `p` has not settled within `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
