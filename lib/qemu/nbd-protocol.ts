// The NBD protocol's numbers and shapes (magic values, options, commands, reply types, flags
// and errors), shared by the handshake (nbd-negotiation.ts) and the client (nbd-client.ts).
import { countRejection } from '../observability/rejections';

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_SET_META_CONTEXT = 10;

export const REP_ACK = 1;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
export const REP_ERR_BIT = 0x8000_0000;
export const REP_ERR_UNSUP = REP_ERR_BIT + 1;
export const REP_ERR_UNKNOWN = REP_ERR_BIT + 6;

export const INFO_EXPORT = 0;
export const INFO_BLOCK_SIZE = 3;

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

export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_BLOCK_STATUS = 7;
export const CMD_FLAG_FUA = 1 << 0;

export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR_BIT = 1 << 15;
export const REPLY_TYPE_ERROR_OFFSET = REPLY_TYPE_ERROR_BIT + 2;

/** `base:allocation` flags. */
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/** `qemu:dirty-bitmap:*` flag. */
export const NBD_STATE_DIRTY = 1 << 0;

export const ERRNO_NAMES: Record<number, string> = {
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
export const DEFAULT_CHUNK = 4 * 1024 * 1024;
// Block status requests carry no payload; 2 GiB fits the 32-bit length and every alignment.
export const MAX_STATUS_REQUEST = 0x8000_0000;
// A reply chunk bigger than this can only mean a corrupted stream.
export const MAX_REPLY_PAYLOAD = 64 * 1024 * 1024 + 1024;
// Stop reading from the socket when this much is buffered and not yet consumed.
export const HIGH_WATER = 64 * 1024 * 1024;

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

/** The server broke the protocol (a malformed or impossible reply); counted as a rejection. */
export class NbdProtocolError extends NbdError {
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message);
    this.name = 'NbdProtocolError';
    countRejection('nbd', kind, message);
  }
}

// Option replies carry names and small structures; anything larger is a broken or hostile server.
export const MAX_OPTION_REPLY = 64 * 1024;

export interface RequestFields {
  command: string;
  // Reads: where the data goes.
  target?: Buffer;
  targetOffset?: number;
  /** Bytes of the read filled so far by data and hole chunks (structured replies). */
  covered?: number;
  offset: number;
  length: number;
  /** Byte ranges of the read already filled by chunks: they may not overlap. */
  filled?: [number, number][];
  // Block status: which context to keep and what was received.
  contextId?: number;
  extents?: NbdExtent[];
}

export interface Request extends RequestFields {
  resolve: () => void;
  reject: (err: Error) => void;
  error?: Error;
}

export function requestHeader(
  flags: number,
  type: number,
  cookie: bigint,
  offset: number,
  length: number,
): Buffer {
  const b = Buffer.allocUnsafe(28);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return b;
}
