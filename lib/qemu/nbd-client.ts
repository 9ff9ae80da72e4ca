// An NBD client (fixed newstyle handshake, structured replies, metadata contexts) written for
// OSR: the process server reads frozen disk views and their dirty bitmaps with it, and the
// demo workload writes through it. Requests are pipelined and matched by their 64-bit cookie.
import type * as net from 'node:net';
//
// The protocol's numbers are in nbd-protocol.ts, the socket in nbd-transport.ts, the handshake in
// nbd-negotiation.ts; this file is the transmission phase: requests and (structured) replies.
import {
  CMD_BLOCK_STATUS,
  CMD_DISC,
  CMD_FLAG_FUA,
  CMD_FLUSH,
  CMD_READ,
  CMD_WRITE,
  DEFAULT_CHUNK,
  ERRNO_NAMES,
  MAX_REPLY_PAYLOAD,
  MAX_STATUS_REQUEST,
  NBD_FLAG,
  NbdError,
  NbdProtocolError,
  OPT_ABORT,
  REPLY_FLAG_DONE,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  requestHeader,
  type NbdBlockSize,
  type NbdConnectOptions,
  type NbdExtent,
  type Request,
  type RequestFields,
} from './nbd-protocol';
import { handshake, optionHeader, type Negotiated } from './nbd-negotiation';
import { readChunkPayload } from './nbd-chunks';
import { SocketReader, openSocket } from './nbd-transport';

export {
  NBD_FLAG,
  NBD_STATE_DIRTY,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  NbdError,
  type NbdBlockSize,
  type NbdConnectOptions,
  type NbdExtent,
} from './nbd-protocol';

export class NbdClient {
  /** Export size in bytes. */
  readonly size: number;
  readonly transmissionFlags: number;
  readonly blockSize: NbdBlockSize;
  /** Negotiated metadata contexts: name → id used on the wire. */
  readonly metaContexts: ReadonlyMap<string, number>;
  readonly structuredReplies: boolean;

  private readonly chunk: number;
  private nextCookie = 1n;
  private readonly inFlight = new Map<bigint, Request>();
  private readonly outstanding = new Set<Promise<void>>();
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  // Set once NBD_CMD_DISC is sent: the server closing the socket is then expected.
  private disconnecting = false;

  private constructor(
    private readonly socket: net.Socket,
    private readonly reader: SocketReader,
    readonly exportName: string,
    /** Where the server is, for messages: `unix:/path` or `host:port`. */
    readonly where: string,
    negotiated: Negotiated,
    maxChunkBytes: number,
  ) {
    this.size = negotiated.size;
    this.transmissionFlags = negotiated.flags;
    this.blockSize = negotiated.blockSize;
    this.metaContexts = negotiated.contexts;
    this.structuredReplies = negotiated.structured;
    const max = Math.min(maxChunkBytes, negotiated.blockSize.maximum);
    this.chunk = Math.max(negotiated.blockSize.minimum, max - (max % negotiated.blockSize.minimum));
    socket.on('close', () => this.failAll(this.error('connection closed by the server')));
    socket.on('error', (err) => this.failAll(this.error(`socket error: ${err.message}`)));
    void this.receiveLoop();
  }

  static async connect(options: NbdConnectOptions): Promise<NbdClient> {
    const where = options.socket
      ? `unix:${options.socket}`
      : `${options.host ?? 'localhost'}:${options.port ?? 10809}`;
    const label = `NBD export "${options.exportName}" at ${where}`;
    const socket = await openSocket(options, label);
    const reader = new SocketReader(socket);
    socket.on('close', () => reader.end(new NbdError(`${label}: connection closed`)));
    socket.on('error', (err) => reader.end(new NbdError(`${label}: ${err.message}`)));
    const timeoutMs = options.connectTimeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      reader.end(new NbdError(`${label}: handshake did not finish within ${timeoutMs} ms`));
      socket.destroy();
    }, timeoutMs);
    try {
      const negotiated = await handshake(
        socket,
        reader,
        options.exportName,
        options.metaContexts ?? [],
        label,
      );
      return new NbdClient(
        socket,
        reader,
        options.exportName,
        where,
        negotiated,
        options.maxChunkBytes ?? DEFAULT_CHUNK,
      );
    } catch (err) {
      // Tell the server we give up rather than vanish mid-negotiation (QEMU logs that as an error).
      if (!socket.destroyed) socket.end(optionHeader(OPT_ABORT, 0));
      setTimeout(() => socket.destroy(), 1000).unref();
      // Whatever the server sent, the caller sees an NbdError, never a parser's RangeError.
      throw err instanceof NbdError
        ? err
        : new NbdProtocolError('malformed', `${label}: malformed handshake: ${String(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  get readOnly(): boolean {
    return (this.transmissionFlags & NBD_FLAG.READ_ONLY) !== 0;
  }

  /** Reads `length` bytes at `offset`; holes come back as zeros. Large reads are split and pipelined. */
  async read(offset: number, length: number): Promise<Buffer> {
    // Not zero-filled: every byte is written by a data or hole chunk, and a reply that leaves a
    // gap fails the read (see finish), so no stale memory can leak into a replica.
    const target = Buffer.allocUnsafe(length);
    await this.readInto(target, 0, offset, length);
    return target;
  }

  /** Reads `length` bytes at `offset` into `target` at `targetOffset` (no intermediate buffer). */
  async readInto(target: Buffer, targetOffset: number, offset: number, length: number): Promise<void> {
    this.checkRange('read', offset, length);
    if (targetOffset < 0 || targetOffset + length > target.length) {
      throw new RangeError(
        `readInto: ${length} bytes at ${targetOffset} do not fit a buffer of ${target.length}`,
      );
    }
    const parts: Promise<void>[] = [];
    for (let done = 0; done < length; done += this.chunk) {
      const len = Math.min(this.chunk, length - done);
      parts.push(
        this.send(CMD_READ, 0, offset + done, len, undefined, {
          command: 'read',
          target,
          targetOffset: targetOffset + done,
          offset: offset + done,
          length: len,
        }),
      );
    }
    await Promise.all(parts);
  }

  /** Writes `buf` at `offset`; `fua` asks the server to make it durable before answering. */
  async write(offset: number, buf: Buffer, options: { fua?: boolean } = {}): Promise<void> {
    if (this.readOnly) throw this.error('export is read-only');
    this.checkRange('write', offset, buf.length);
    const fua = options.fua && (this.transmissionFlags & NBD_FLAG.SEND_FUA) !== 0 ? CMD_FLAG_FUA : 0;
    const parts: Promise<void>[] = [];
    for (let done = 0; done < buf.length; done += this.chunk) {
      const len = Math.min(this.chunk, buf.length - done);
      parts.push(
        this.send(CMD_WRITE, fua, offset + done, len, buf.subarray(done, done + len), {
          command: 'write',
          offset: offset + done,
          length: len,
        }),
      );
    }
    await Promise.all(parts);
  }

  /** Makes every completed write durable; a no-op when the server does not support flush. */
  async flush(): Promise<void> {
    if ((this.transmissionFlags & NBD_FLAG.SEND_FLUSH) === 0) return;
    await this.send(CMD_FLUSH, 0, 0, 0, undefined, { command: 'flush', offset: 0, length: 0 });
  }

  /**
   * Extents of `context` covering exactly [offset, offset+length). The server may answer for
   * less than asked (QEMU caps the extents per reply), so this asks again from where it stopped.
   */
  async blockStatus(offset: number, length: number, context: string): Promise<NbdExtent[]> {
    const contextId = this.metaContexts.get(context);
    if (contextId === undefined) {
      throw this.error(
        `metadata context "${context}" was not negotiated (have: ${[...this.metaContexts.keys()].join(', ') || 'none'})`,
      );
    }
    this.checkRange('block status', offset, length);
    const out: NbdExtent[] = [];
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const reqLen = Math.min(end - pos, MAX_STATUS_REQUEST);
      const got: NbdExtent[] = [];
      await this.send(CMD_BLOCK_STATUS, 0, pos, reqLen, undefined, {
        command: 'block status',
        offset: pos,
        length: reqLen,
        contextId,
        extents: got,
      });
      const before = pos;
      for (const e of got) {
        const len = Math.min(e.length, end - pos);
        if (len <= 0) break;
        const last = out[out.length - 1];
        if (last && last.flags === e.flags && last.offset + last.length === pos) last.length += len;
        else out.push({ offset: pos, length: len, flags: e.flags });
        pos += len;
      }
      if (pos === before) throw this.error(`block status at ${pos} returned no extent for ${context}`);
    }
    return out;
  }

  /** Refuses new requests, waits for outstanding ones, sends NBD_CMD_DISC and closes the socket. */
  close(): Promise<void> {
    this.closing ??= this.disconnect();
    return this.closing;
  }

  private async disconnect(): Promise<void> {
    await Promise.allSettled([...this.outstanding]);
    this.disconnecting = true;
    if (!this.failure && !this.socket.destroyed) {
      this.socket.write(requestHeader(0, CMD_DISC, this.nextCookie++, 0, 0));
    }
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 2000).unref();
    });
  }

  private send(
    type: number,
    flags: number,
    offset: number,
    length: number,
    payload: Buffer | undefined,
    fields: RequestFields,
  ): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(this.error('client is closed'));
    const p = new Promise<void>((resolve, reject) => {
      const cookie = this.nextCookie++;
      this.inFlight.set(cookie, { ...fields, resolve, reject });
      this.socket.write(requestHeader(flags, type, cookie, offset, length));
      if (payload) this.socket.write(payload);
    });
    // close() waits for these; the caller still sees the rejection through `p`.
    this.outstanding.add(p);
    const forget = (): void => void this.outstanding.delete(p);
    p.then(forget, forget);
    return p;
  }

  private checkRange(what: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw this.error(`${what}: bad range offset=${offset} length=${length}`);
    }
    if (offset + length > this.size) {
      throw this.error(`${what}: range ${offset}+${length} is beyond the export size ${this.size}`);
    }
  }

  /** The server broke the protocol: counted, and the connection is failed by the receive loop. */
  private broken(kind: string, message: string): NbdProtocolError {
    return new NbdProtocolError(kind, `NBD export "${this.exportName}" at ${this.where}: ${message}`);
  }

  private error(message: string, errno?: number): NbdError {
    return new NbdError(`NBD export "${this.exportName}" at ${this.where}: ${message}`, errno);
  }

  private commandError(req: Request, errno: number, detail?: string): NbdError {
    const name = ERRNO_NAMES[errno] ?? `error ${errno}`;
    return this.error(
      `${req.command} at ${req.offset}+${req.length} failed: ${name}${detail ? ` (${detail})` : ''}`,
      errno,
    );
  }

  private failAll(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.reader.end(err);
    for (const req of this.inFlight.values()) req.reject(err);
    this.inFlight.clear();
  }

  private async receiveLoop(): Promise<void> {
    try {
      for (;;) {
        const magic = (await this.reader.read(4)).readUInt32BE(0);
        if (magic === SIMPLE_REPLY_MAGIC) await this.onSimpleReply();
        else if (magic === STRUCTURED_REPLY_MAGIC) await this.onStructuredChunk();
        else throw this.broken('bad-magic', `bad reply magic 0x${magic.toString(16)}`);
      }
    } catch (err) {
      const e = err instanceof NbdError ? err : this.broken('malformed', `malformed reply: ${String(err)}`);
      // After NBD_CMD_DISC the server just closes: that is the expected end.
      this.failAll(this.disconnecting ? this.error('client is closed') : e);
      this.socket.destroy();
    }
  }

  private takeRequest(cookie: bigint): Request {
    const req = this.inFlight.get(cookie);
    if (!req) throw this.broken('unknown-cookie', `reply for unknown cookie ${cookie}`);
    return req;
  }

  private finish(cookie: bigint, req: Request): void {
    this.inFlight.delete(cookie);
    if (!req.error && req.covered !== undefined && req.covered !== req.length) {
      req.error = this.error(
        `the reply to the read ${req.offset}+${req.length} covered only ${req.covered} bytes`,
      );
    }
    if (req.error) req.reject(req.error);
    else req.resolve();
  }

  private async onSimpleReply(): Promise<void> {
    const head = await this.reader.read(12);
    const errno = head.readUInt32BE(0);
    const cookie = head.readBigUInt64BE(4);
    const req = this.takeRequest(cookie);
    if (errno !== 0) req.error = this.commandError(req, errno);
    else if (req.target) await this.reader.readInto(req.target, req.targetOffset ?? 0, req.length);
    this.finish(cookie, req);
  }

  private async onStructuredChunk(): Promise<void> {
    const head = await this.reader.read(16);
    const flags = head.readUInt16BE(0);
    const type = head.readUInt16BE(2);
    const cookie = head.readBigUInt64BE(4);
    const length = head.readUInt32BE(12);
    if (length > MAX_REPLY_PAYLOAD)
      throw this.broken('bad-length', `reply chunk of ${length} bytes is implausible`);
    const req = this.takeRequest(cookie);
    await readChunkPayload(this.reader, req, type, length, {
      broken: (kind, message) => this.broken(kind, message),
      commandError: (errno, detail) => this.commandError(req, errno, detail),
    });
    if (flags & REPLY_FLAG_DONE) this.finish(cookie, req);
  }
}
