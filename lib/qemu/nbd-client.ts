// An NBD client (fixed newstyle handshake, structured replies, metadata contexts) written for
// OSR: the process server reads frozen disk views and their dirty bitmaps with it, and the
// demo workload writes through it. Requests are pipelined and matched by their 64-bit cookie.
import * as net from 'node:net';

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

const FLAG_FIXED_NEWSTYLE = 1 << 0;
const FLAG_NO_ZEROES = 1 << 1;

const OPT_EXPORT_NAME = 1;
const OPT_ABORT = 2;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const OPT_SET_META_CONTEXT = 10;

const REP_ACK = 1;
const REP_INFO = 3;
const REP_META_CONTEXT = 4;
const REP_ERR_BIT = 0x8000_0000;
const REP_ERR_UNSUP = REP_ERR_BIT + 1;
const REP_ERR_UNKNOWN = REP_ERR_BIT + 6;

const INFO_EXPORT = 0;
const INFO_BLOCK_SIZE = 3;

/** Transmission flags advertised by the server for the export. */
export const NBD_FLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  CAN_MULTI_CONN: 1 << 8,
} as const;

const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const CMD_FLUSH = 3;
const CMD_BLOCK_STATUS = 7;
const CMD_FLAG_FUA = 1 << 0;

const REPLY_FLAG_DONE = 1 << 0;
const REPLY_TYPE_NONE = 0;
const REPLY_TYPE_OFFSET_DATA = 1;
const REPLY_TYPE_OFFSET_HOLE = 2;
const REPLY_TYPE_BLOCK_STATUS = 5;
const REPLY_TYPE_ERROR_BIT = 1 << 15;
const REPLY_TYPE_ERROR_OFFSET = REPLY_TYPE_ERROR_BIT + 2;

/** `base:allocation` flags. */
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/** `qemu:dirty-bitmap:*` flag. */
export const NBD_STATE_DIRTY = 1 << 0;

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  5: 'EIO',
  12: 'ENOMEM',
  22: 'EINVAL',
  28: 'ENOSPC',
  75: 'EOVERFLOW',
  95: 'ENOTSUP',
  108: 'ESHUTDOWN',
};

// 4 MiB keeps every request far below QEMU's 32 MiB payload limit and any other server's.
const DEFAULT_CHUNK = 4 * 1024 * 1024;
// Block status requests carry no payload; 2 GiB fits the 32-bit length and every alignment.
const MAX_STATUS_REQUEST = 0x8000_0000;
// A reply chunk bigger than this can only mean a corrupted stream.
const MAX_REPLY_PAYLOAD = 64 * 1024 * 1024 + 1024;
// Stop reading from the socket when this much is buffered and not yet consumed.
const HIGH_WATER = 64 * 1024 * 1024;

export interface NbdConnectOptions {
  /** Unix socket path; or give host and port for TCP. */
  socket?: string;
  host?: string;
  port?: number;
  exportName: string;
  /** Metadata contexts to negotiate, e.g. `base:allocation`, `qemu:dirty-bitmap:osr-3`. */
  metaContexts?: string[];
  /** Largest read/write payload per request (capped by the server's advertised maximum). */
  maxChunkBytes?: number;
  connectTimeoutMs?: number;
}

export interface NbdExtent {
  offset: number;
  length: number;
  flags: number;
}

export interface NbdBlockSize {
  minimum: number;
  preferred: number;
  maximum: number;
}

/** A failure of the NBD protocol or of a command; `errno` is the server's error code if any. */
export class NbdError extends Error {
  constructor(
    message: string,
    readonly errno?: number,
  ) {
    super(message);
    this.name = 'NbdError';
  }
}

interface RequestFields {
  command: string;
  // Reads: where the data goes.
  target?: Buffer;
  targetOffset?: number;
  /** Bytes of the read filled so far by data and hole chunks (structured replies). */
  covered?: number;
  offset: number;
  length: number;
  // Block status: which context to keep and what was received.
  contextId?: number;
  extents?: NbdExtent[];
}

interface Request extends RequestFields {
  resolve: () => void;
  reject: (err: Error) => void;
  error?: Error;
}

/** Buffers socket data and hands out exact byte counts to one sequential consumer. */
class SocketReader {
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
      throw err;
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
        else throw this.error(`bad reply magic 0x${magic.toString(16)}`);
      }
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      // After NBD_CMD_DISC the server just closes: that is the expected end.
      this.failAll(this.disconnecting ? this.error('client is closed') : e);
      this.socket.destroy();
    }
  }

  private takeRequest(cookie: bigint): Request {
    const req = this.inFlight.get(cookie);
    if (!req) throw this.error(`reply for unknown cookie ${cookie}`);
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
    if (length > MAX_REPLY_PAYLOAD) throw this.error(`reply chunk of ${length} bytes is implausible`);
    const req = this.takeRequest(cookie);

    if (type === REPLY_TYPE_OFFSET_DATA && req.target) {
      const dataLen = length - 8;
      const at = Number((await this.reader.read(8)).readBigUInt64BE(0));
      const rel = at - req.offset;
      if (dataLen < 0 || rel < 0 || rel + dataLen > req.length) {
        throw this.error(`data chunk ${at}+${dataLen} is outside the read ${req.offset}+${req.length}`);
      }
      await this.reader.readInto(req.target, (req.targetOffset ?? 0) + rel, dataLen);
      req.covered = (req.covered ?? 0) + dataLen;
    } else if (type === REPLY_TYPE_OFFSET_HOLE && req.target) {
      const body = await this.reader.read(length);
      const at = Number(body.readBigUInt64BE(0));
      const holeLen = body.readUInt32BE(8);
      const rel = at - req.offset;
      if (rel < 0 || rel + holeLen > req.length) {
        throw this.error(`hole chunk ${at}+${holeLen} is outside the read ${req.offset}+${req.length}`);
      }
      const base = (req.targetOffset ?? 0) + rel;
      req.target.fill(0, base, base + holeLen);
      req.covered = (req.covered ?? 0) + holeLen;
    } else if (type === REPLY_TYPE_BLOCK_STATUS && req.extents) {
      const body = await this.reader.read(length);
      if (body.readUInt32BE(0) === req.contextId) {
        for (let p = 4; p + 8 <= body.length; p += 8) {
          req.extents.push({ offset: 0, length: body.readUInt32BE(p), flags: body.readUInt32BE(p + 4) });
        }
      }
    } else if ((type & REPLY_TYPE_ERROR_BIT) !== 0) {
      const body = await this.reader.read(length);
      const errno = length >= 4 ? body.readUInt32BE(0) : 5;
      const msgLen = length >= 6 ? body.readUInt16BE(4) : 0;
      let detail = body.subarray(6, 6 + msgLen).toString('utf8');
      if (type === REPLY_TYPE_ERROR_OFFSET && body.length >= 6 + msgLen + 8) {
        detail += `${detail ? ' ' : ''}at offset ${body.readBigUInt64BE(6 + msgLen)}`;
      }
      req.error ??= this.commandError(req, errno, detail);
    } else if (type !== REPLY_TYPE_NONE) {
      // A chunk type this client does not use: skip its payload.
      await this.reader.skip(length);
    }
    if (flags & REPLY_FLAG_DONE) this.finish(cookie, req);
  }
}

function requestHeader(flags: number, type: number, cookie: bigint, offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(28);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return b;
}

function openSocket(options: NbdConnectOptions, label: string): Promise<net.Socket> {
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

interface Negotiated {
  size: number;
  flags: number;
  blockSize: NbdBlockSize;
  contexts: Map<string, number>;
  structured: boolean;
}

interface OptionReply {
  type: number;
  data: Buffer;
}

async function handshake(
  socket: net.Socket,
  reader: SocketReader,
  exportName: string,
  wantedContexts: string[],
  label: string,
): Promise<Negotiated> {
  const hello = await reader.read(18);
  if (hello.readBigUInt64BE(0) !== NBDMAGIC || hello.readBigUInt64BE(8) !== IHAVEOPT) {
    throw new NbdError(`${label}: not a newstyle NBD server`);
  }
  const serverFlags = hello.readUInt16BE(16);
  if ((serverFlags & FLAG_FIXED_NEWSTYLE) === 0) throw new NbdError(`${label}: server lacks fixed newstyle`);
  const noZeroes = (serverFlags & FLAG_NO_ZEROES) !== 0;
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (noZeroes ? FLAG_NO_ZEROES : 0));
  socket.write(clientFlags);

  const sendOption = (option: number, data: Buffer): void => {
    socket.write(Buffer.concat([optionHeader(option, data.length), data]));
  };
  const readReply = async (option: number): Promise<OptionReply> => {
    const h = await reader.read(20);
    if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw new NbdError(`${label}: bad option reply magic`);
    if (h.readUInt32BE(8) !== option)
      throw new NbdError(`${label}: reply to option ${h.readUInt32BE(8)}, not ${option}`);
    const type = h.readUInt32BE(12);
    const data = await reader.read(h.readUInt32BE(16));
    return { type, data };
  };
  const optionError = (what: string, reply: OptionReply): NbdError => {
    const text = reply.data.toString('utf8');
    const kind =
      reply.type === REP_ERR_UNKNOWN ? 'no such export' : `error 0x${(reply.type >>> 0).toString(16)}`;
    return new NbdError(`${label}: ${what} refused: ${kind}${text ? ` (${text})` : ''}`);
  };

  // Structured replies let reads return holes and are required for block status.
  sendOption(OPT_STRUCTURED_REPLY, Buffer.alloc(0));
  const sr = await readReply(OPT_STRUCTURED_REPLY);
  const structured = sr.type === REP_ACK;
  if (!structured && (sr.type & REP_ERR_BIT) === 0)
    throw new NbdError(`${label}: odd reply to structured reply`);

  const name = Buffer.from(exportName, 'utf8');
  const contexts = new Map<string, number>();
  if (wantedContexts.length > 0) {
    if (!structured)
      throw new NbdError(`${label}: server has no structured replies, so no metadata contexts`);
    const parts: Buffer[] = [u32(name.length), name, u32(wantedContexts.length)];
    for (const c of wantedContexts) {
      const cb = Buffer.from(c, 'utf8');
      parts.push(u32(cb.length), cb);
    }
    sendOption(OPT_SET_META_CONTEXT, Buffer.concat(parts));
    for (;;) {
      const r = await readReply(OPT_SET_META_CONTEXT);
      if (r.type === REP_ACK) break;
      if (r.type === REP_META_CONTEXT)
        contexts.set(r.data.subarray(4).toString('utf8'), r.data.readUInt32BE(0));
      else throw optionError('NBD_OPT_SET_META_CONTEXT', r);
    }
    const missing = wantedContexts.filter((c) => !contexts.has(c));
    if (missing.length > 0) {
      throw new NbdError(
        `${label}: server does not offer metadata context(s) ${missing.join(', ')} for this export`,
      );
    }
  }

  const infos = [INFO_BLOCK_SIZE];
  const infoBuf = Buffer.alloc(2 + 2 * infos.length);
  infoBuf.writeUInt16BE(infos.length, 0);
  infos.forEach((t, i) => infoBuf.writeUInt16BE(t, 2 + 2 * i));
  sendOption(OPT_GO, Buffer.concat([u32(name.length), name, infoBuf]));
  let size: number | undefined;
  let flags = 0;
  const blockSize: NbdBlockSize = { minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 };
  for (;;) {
    const r = await readReply(OPT_GO);
    if (r.type === REP_ACK) break;
    if (r.type === REP_INFO) {
      const infoType = r.data.readUInt16BE(0);
      if (infoType === INFO_EXPORT) {
        size = Number(r.data.readBigUInt64BE(2));
        flags = r.data.readUInt16BE(10);
      } else if (infoType === INFO_BLOCK_SIZE) {
        blockSize.minimum = r.data.readUInt32BE(2);
        blockSize.preferred = r.data.readUInt32BE(6);
        blockSize.maximum = r.data.readUInt32BE(10);
      }
      continue;
    }
    if (r.type === REP_ERR_UNSUP) {
      // Old servers: NBD_OPT_EXPORT_NAME has no reply on error, the server just closes.
      sendOption(OPT_EXPORT_NAME, name);
      const tail = await reader.read(10 + (noZeroes ? 0 : 124));
      size = Number(tail.readBigUInt64BE(0));
      flags = tail.readUInt16BE(8);
      break;
    }
    throw optionError(`NBD_OPT_GO for export "${exportName}"`, r);
  }
  if (size === undefined) throw new NbdError(`${label}: server sent no export size`);
  return { size, flags, blockSize, contexts, structured };
}

function optionHeader(option: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(16);
  h.writeBigUInt64BE(IHAVEOPT, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(length, 12);
  return h;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}
