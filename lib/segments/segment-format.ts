// The wire format of a segment: the changed extents of one disk for one cycle, as uploaded to the
// cache container and applied by the cloud applier (and by the master target on failback).
//
//   offset 0   8 bytes   magic "OSRSEG1\0"
//   offset 8   4 bytes   header length H, unsigned big-endian
//   offset 12  H bytes   header: UTF-8 JSON, see SegmentHeader
//   12+H       P bytes   AES-256-GCM ciphertext of the payload (P = header.payloadLength)
//   12+H+P     16 bytes  GCM authentication tag
//
// The payload is the bytes of the 'data' extents, concatenated in extent order, zstd-compressed
// when that makes it smaller. 'zero' extents carry no bytes. The GCM associated data is
// everything before the ciphertext (magic, length and header bytes exactly as stored), so a change
// to any byte of a segment fails authentication; a segment that fails any check never yields data.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { CCtx, compressBound, DCtx } from 'zstd-napi/binding';
import type { EncryptionKey, Keyring } from './keys';

export const SEGMENT_MAGIC: Buffer = Buffer.from('OSRSEG1\0', 'latin1');
export const SEGMENT_VERSION = 1;
/** Disk addressing unit: page blobs take 512-byte pages. */
export const SECTOR_BYTES = 512;
/** Raw bytes one segment may cover: the most one Azure uploadPages call accepts. */
export const MAX_SEGMENT_RAW_BYTES = 4 * 1024 * 1024;
/** Zero detection granularity inside an extent: coarse enough to cost nothing on non-zero data. */
export const ZERO_BLOCK_BYTES = 64 * 1024;
export const DEFAULT_COMPRESSION_LEVEL = 1;

const PREFIX_BYTES = SEGMENT_MAGIC.length + 4;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
// Worst case is one extent per sector: 8192 extents of ~60 JSON bytes each. Anything bigger is
// refused before parsing, so a hostile length field cannot make us parse megabytes of JSON.
const MAX_HEADER_BYTES = 1024 * 1024;
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HEX_SHA256 = /^[0-9a-f]{64}$/;
const HEX_NONCE = /^[0-9a-f]{24}$/;
const HEX_KEY_ID = /^[0-9a-f]{8}$/;
// Widths fit Number.MAX_SAFE_INTEGER (16 digits) and 2^32 segments per cycle, so names sort by number.
const CYCLE_DIGITS = 16;
const INDEX_DIGITS = 10;

export type ExtentKind = 'data' | 'zero';
export type SegmentCompression = 'zstd' | 'none';

/** A byte range of a disk. Offsets and lengths are multiples of 512. */
export interface Extent {
  offset: number;
  length: number;
}

export interface SegmentExtent extends Extent {
  kind: ExtentKind;
}

export interface SegmentHeader {
  version: typeof SEGMENT_VERSION;
  machineId: string;
  diskId: string;
  cycle: number;
  index: number;
  /** Ascending, non-overlapping, adjacent extents of one kind merged. */
  extents: SegmentExtent[];
  /** Bytes of disk covered by all extents, zero ones included. */
  rawLength: number;
  /** Bytes of the 'data' extents: the payload before compression. */
  dataLength: number;
  /** SHA-256 (hex) of the payload before compression. */
  sha256: string;
  compression: SegmentCompression;
  /** Bytes of ciphertext, i.e. of the payload after compression. */
  payloadLength: number;
  /** 12-byte GCM nonce, hex. Random per segment: far below the 2^32 messages per key GCM allows. */
  nonce: string;
  keyId: string;
}

export interface SegmentInput {
  machineId: string;
  diskId: string;
  cycle: number;
  index: number;
  /** Ascending, non-overlapping extents; `data` holds their bytes concatenated in this order. */
  extents: readonly Extent[];
  data: Uint8Array;
  compressionLevel?: number;
}

export interface SegmentStats {
  /** Bytes of disk the segment covers. */
  rawBytes: number;
  /** Of rawBytes, those found to be zero and sent as 'zero' extents. */
  zeroBytes: number;
  /** Bytes of (compressed) payload, i.e. of ciphertext. */
  payloadBytes: number;
  /** Bytes of the whole segment as uploaded. */
  segmentBytes: number;
}

export interface EncodedSegment {
  segment: Buffer;
  header: SegmentHeader;
  stats: SegmentStats;
}

export interface DecodedSegment {
  header: SegmentHeader;
  /** Bytes of the 'data' extents, concatenated in extent order. */
  data: Buffer;
}

export type SegmentRejectReason =
  | 'truncated'
  | 'bad-magic'
  | 'bad-header'
  | 'unsupported-version'
  | 'trailing-data'
  | 'unknown-key'
  | 'auth-failed'
  | 'decompress-failed'
  | 'length-mismatch'
  | 'hash-mismatch';

/** A segment failed verification. It must not be applied; no data from it is returned. */
export class SegmentVerificationError extends Error {
  override readonly name = 'SegmentVerificationError';
  constructor(
    readonly reason: SegmentRejectReason,
    readonly detail: string,
  ) {
    super(`segment rejected (${reason}): ${detail}`);
  }
}

/**
 * Blob name of a segment in the cache container. Deterministic, so a retried upload overwrites
 * the same blob instead of leaving a second copy; zero-padded, so names list in apply order.
 */
export function segmentBlobName(machineId: string, diskId: string, cycle: number, index: number): string {
  return `${segmentCyclePrefix(machineId, diskId, cycle)}${padNumber('index', index, INDEX_DIGITS)}.seg`;
}

/** Prefix shared by every segment of one disk and cycle: list it to find what a cycle uploaded. */
export function segmentCyclePrefix(machineId: string, diskId: string, cycle: number): string {
  assertId('machineId', machineId);
  assertId('diskId', diskId);
  return `${machineId}/${diskId}/${padNumber('cycle', cycle, CYCLE_DIGITS)}/`;
}

export function encodeSegment(input: SegmentInput, key: EncryptionKey): EncodedSegment {
  assertId('machineId', input.machineId);
  assertId('diskId', input.diskId);
  assertCount('cycle', input.cycle);
  assertCount('index', input.index);
  const data = asBuffer(input.data);
  const { extents, dataPieces, rawLength, dataLength } = splitZeroExtents(input.extents, data);

  // One data run (the usual case) is a view of the input: no copy.
  const payload = dataPieces.length === 1 ? dataPieces[0]! : Buffer.concat(dataPieces, dataLength);
  const sha256 = createHash('sha256').update(payload).digest('hex');
  const compressed = compressIfSmaller(payload, input.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL);
  const body = compressed ?? payload;
  const nonce = randomBytes(NONCE_BYTES);

  const header: SegmentHeader = {
    version: SEGMENT_VERSION,
    machineId: input.machineId,
    diskId: input.diskId,
    cycle: input.cycle,
    index: input.index,
    extents,
    rawLength,
    dataLength,
    sha256,
    compression: compressed === undefined ? 'none' : 'zstd',
    payloadLength: body.length,
    nonce: nonce.toString('hex'),
    keyId: key.id,
  };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const prefixLength = PREFIX_BYTES + headerBytes.length;
  const total = prefixLength + body.length + TAG_BYTES;
  // allocUnsafeSlow: the segment owns its ArrayBuffer exactly, so it can be moved between threads.
  const segment = Buffer.allocUnsafeSlow(total);
  SEGMENT_MAGIC.copy(segment, 0);
  segment.writeUInt32BE(headerBytes.length, SEGMENT_MAGIC.length);
  headerBytes.copy(segment, PREFIX_BYTES);

  const cipher = createCipheriv('aes-256-gcm', key.keyObject, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(segment.subarray(0, prefixLength));
  let at = prefixLength;
  at += cipher.update(body).copy(segment, at);
  at += cipher.final().copy(segment, at);
  cipher.getAuthTag().copy(segment, at);

  return {
    segment,
    header,
    stats: {
      rawBytes: rawLength,
      zeroBytes: rawLength - dataLength,
      payloadBytes: body.length,
      segmentBytes: total,
    },
  };
}

export function decodeSegment(buffer: Uint8Array, keyring: Keyring): DecodedSegment {
  const segment = asBuffer(buffer);
  if (segment.length < SEGMENT_MAGIC.length) {
    const isPrefix = SEGMENT_MAGIC.subarray(0, segment.length).equals(segment);
    throw isPrefix
      ? new SegmentVerificationError('truncated', `${segment.length} bytes, shorter than the magic`)
      : new SegmentVerificationError('bad-magic', 'not an OSR segment');
  }
  if (!segment.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)) {
    throw new SegmentVerificationError('bad-magic', 'not an OSR segment');
  }
  if (segment.length < PREFIX_BYTES) {
    throw new SegmentVerificationError('truncated', `${segment.length} bytes, header length missing`);
  }
  const headerLength = segment.readUInt32BE(SEGMENT_MAGIC.length);
  if (headerLength === 0 || headerLength > MAX_HEADER_BYTES) {
    throw new SegmentVerificationError('bad-header', `header length ${headerLength} out of range`);
  }
  const prefixLength = PREFIX_BYTES + headerLength;
  if (segment.length < prefixLength) {
    throw new SegmentVerificationError('truncated', `${segment.length} bytes, header needs ${prefixLength}`);
  }
  const header = parseHeader(segment.subarray(PREFIX_BYTES, prefixLength));
  const expected = prefixLength + header.payloadLength + TAG_BYTES;
  if (segment.length < expected) {
    throw new SegmentVerificationError('truncated', `${segment.length} bytes, header says ${expected}`);
  }
  if (segment.length > expected) {
    throw new SegmentVerificationError('trailing-data', `${segment.length} bytes, header says ${expected}`);
  }
  const key = keyring.get(header.keyId);
  if (key === undefined) {
    throw new SegmentVerificationError(
      'unknown-key',
      `encrypted with key ${header.keyId}, keyring has ${keyring.ids.join(', ') || 'no keys'}`,
    );
  }

  const decipher = createDecipheriv('aes-256-gcm', key.keyObject, Buffer.from(header.nonce, 'hex'), {
    authTagLength: TAG_BYTES,
  });
  decipher.setAAD(segment.subarray(0, prefixLength));
  decipher.setAuthTag(segment.subarray(expected - TAG_BYTES));
  let body: Buffer;
  try {
    // update() hands out plaintext before final() checks the tag; it is dropped unless final() passes.
    const first = decipher.update(segment.subarray(prefixLength, expected - TAG_BYTES));
    const last = decipher.final();
    body = last.length === 0 ? first : Buffer.concat([first, last]);
  } catch {
    throw new SegmentVerificationError('auth-failed', 'header or body altered, or wrong key');
  }

  const data = header.compression === 'zstd' ? decompressExactly(body, header.dataLength) : body;
  if (data.length !== header.dataLength) {
    throw new SegmentVerificationError(
      'length-mismatch',
      `${data.length} bytes, header says ${header.dataLength}`,
    );
  }
  if (createHash('sha256').update(data).digest('hex') !== header.sha256) {
    throw new SegmentVerificationError('hash-mismatch', 'payload does not match its SHA-256');
  }
  return { header, data };
}

interface ZeroSplit {
  extents: SegmentExtent[];
  dataPieces: Buffer[];
  rawLength: number;
  dataLength: number;
}

// Classifies each extent, piece by piece on 64 KiB disk-aligned blocks, as data or zero, and
// merges neighbours of one kind. Buffer.equals is a memcmp that stops at the first non-zero
// byte, so random data costs almost nothing and zero data runs at memory speed.
function splitZeroExtents(input: readonly Extent[], data: Buffer): ZeroSplit {
  const extents: SegmentExtent[] = [];
  const dataPieces: Buffer[] = [];
  let rawLength = 0;
  let dataLength = 0;
  let previousEnd = -1;
  let lastPieceEnd = -1; // end in `data` of the last data piece, to merge contiguous runs
  for (const extent of input) {
    assertExtent(extent, previousEnd);
    previousEnd = extent.offset + extent.length;
    if (rawLength + extent.length > MAX_SEGMENT_RAW_BYTES) {
      throw new RangeError(
        `extents cover more than ${MAX_SEGMENT_RAW_BYTES} bytes; split them into more segments`,
      );
    }
    if (rawLength + extent.length > data.length) {
      throw new RangeError(`extents cover more bytes than data holds (${data.length})`);
    }
    let position = extent.offset;
    while (position < previousEnd) {
      const blockEnd = Math.min(
        previousEnd,
        (Math.floor(position / ZERO_BLOCK_BYTES) + 1) * ZERO_BLOCK_BYTES,
      );
      const start = rawLength + (position - extent.offset);
      const piece = data.subarray(start, start + (blockEnd - position));
      const kind: ExtentKind = piece.equals(ZEROS.subarray(0, piece.length)) ? 'zero' : 'data';
      const last = extents[extents.length - 1];
      if (last !== undefined && last.kind === kind && last.offset + last.length === position) {
        last.length += piece.length;
      } else {
        extents.push({ offset: position, length: piece.length, kind });
      }
      if (kind === 'data') {
        if (lastPieceEnd === start) {
          const merged = dataPieces.length - 1;
          const previous = dataPieces[merged]!;
          dataPieces[merged] = data.subarray(start - previous.length, start + piece.length);
        } else {
          dataPieces.push(piece);
        }
        lastPieceEnd = start + piece.length;
        dataLength += piece.length;
      }
      position = blockEnd;
    }
    rawLength += extent.length;
  }
  if (rawLength !== data.length) {
    throw new RangeError(`data holds ${data.length} bytes but the extents cover ${rawLength}`);
  }
  return { extents, dataPieces, rawLength, dataLength };
}

const ZEROS = Buffer.alloc(ZERO_BLOCK_BYTES);

// One compression context and one output buffer per thread, reused: segments are at most 4 MiB.
let cctx: CCtx | undefined;
let dctx: DCtx | undefined;
let scratch: Buffer | undefined;

function compressIfSmaller(payload: Buffer, level: number): Buffer | undefined {
  if (payload.length === 0) return undefined;
  cctx ??= new CCtx();
  scratch ??= Buffer.allocUnsafeSlow(compressBound(MAX_SEGMENT_RAW_BYTES));
  const written = cctx.compress(scratch, payload, level);
  // The scratch view is consumed (encrypted) before the next call on this thread reuses it.
  return written < payload.length ? scratch.subarray(0, written) : undefined;
}

function decompressExactly(body: Buffer, dataLength: number): Buffer {
  dctx ??= new DCtx();
  // The output is sized from the authenticated header, so a frame cannot grow past it.
  const out = Buffer.allocUnsafeSlow(dataLength);
  let written: number;
  try {
    written = dctx.decompress(out, body);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new SegmentVerificationError('decompress-failed', why);
  }
  if (written !== dataLength) {
    throw new SegmentVerificationError('length-mismatch', `${written} bytes, header says ${dataLength}`);
  }
  return out;
}

// Every field is checked before any is trusted: the header is read before authentication.
function parseHeader(bytes: Buffer): SegmentHeader {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new SegmentVerificationError('bad-header', 'header is not JSON');
  }
  const bad = (what: string): never => {
    throw new SegmentVerificationError('bad-header', what);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return bad('header is not an object');
  const h = value as Record<string, unknown>;
  if (typeof h.version === 'number' && h.version !== SEGMENT_VERSION) {
    throw new SegmentVerificationError(
      'unsupported-version',
      `version ${h.version}, this build reads ${SEGMENT_VERSION}`,
    );
  }
  const allowed = new Set([
    'version',
    'machineId',
    'diskId',
    'cycle',
    'index',
    'extents',
    'rawLength',
    'dataLength',
    'sha256',
    'compression',
    'payloadLength',
    'nonce',
    'keyId',
  ]);
  for (const field of Object.keys(h)) if (!allowed.has(field)) bad(`unknown field ${field}`);
  if (h.version !== SEGMENT_VERSION) bad('version missing');
  for (const field of ['machineId', 'diskId'] as const) {
    const id = h[field];
    if (typeof id !== 'string' || !ID_PATTERN.test(id)) bad(`${field} invalid`);
  }
  for (const field of ['cycle', 'index', 'rawLength', 'dataLength', 'payloadLength'] as const) {
    if (!isCount(h[field])) bad(`${field} invalid`);
  }
  if (typeof h.sha256 !== 'string' || !HEX_SHA256.test(h.sha256)) bad('sha256 invalid');
  if (typeof h.nonce !== 'string' || !HEX_NONCE.test(h.nonce)) bad('nonce invalid');
  if (typeof h.keyId !== 'string' || !HEX_KEY_ID.test(h.keyId)) bad('keyId invalid');
  if (h.compression !== 'zstd' && h.compression !== 'none') bad('compression invalid');
  if (!Array.isArray(h.extents)) return bad('extents invalid');

  const extents: SegmentExtent[] = [];
  let previousEnd = -1;
  let rawLength = 0;
  let dataLength = 0;
  for (const e of h.extents as unknown[]) {
    if (typeof e !== 'object' || e === null) return bad('extent invalid');
    const { offset, length, kind, ...rest } = e as Record<string, unknown>;
    if (Object.keys(rest).length > 0 || (kind !== 'data' && kind !== 'zero')) bad('extent invalid');
    if (!isCount(offset) || !isCount(length) || !isCount(offset + length)) return bad('extent invalid');
    if (offset % SECTOR_BYTES !== 0 || length % SECTOR_BYTES !== 0 || length === 0)
      bad('extent not sector-aligned');
    if (offset < previousEnd) bad('extents overlap or are out of order');
    previousEnd = offset + length;
    rawLength += length;
    if (kind === 'data') dataLength += length;
    extents.push({ offset, length, kind: kind as ExtentKind });
  }
  const header = h as unknown as SegmentHeader;
  if (rawLength !== header.rawLength || rawLength > MAX_SEGMENT_RAW_BYTES) bad('rawLength inconsistent');
  if (dataLength !== header.dataLength) bad('dataLength inconsistent');
  // Encoders store uncompressed whenever zstd does not shrink the payload; anything else is forged.
  if (header.compression === 'none' && header.payloadLength !== header.dataLength)
    bad('payloadLength inconsistent');
  if (
    header.compression === 'zstd' &&
    (header.payloadLength === 0 || header.payloadLength >= header.dataLength)
  ) {
    bad('payloadLength inconsistent');
  }
  return { ...header, extents };
}

function assertExtent(extent: Extent, previousEnd: number): void {
  const { offset, length } = extent;
  if (!isCount(offset) || !isCount(length) || !isCount(offset + length) || length === 0) {
    throw new RangeError(
      `extent {offset: ${offset}, length: ${length}} must have integer offset >= 0 and length > 0`,
    );
  }
  if (offset % SECTOR_BYTES !== 0 || length % SECTOR_BYTES !== 0) {
    throw new RangeError(
      `extent {offset: ${offset}, length: ${length}} is not aligned to ${SECTOR_BYTES} bytes`,
    );
  }
  if (offset < previousEnd) {
    throw new RangeError(
      `extent at ${offset} overlaps or precedes the previous one (ends at ${previousEnd})`,
    );
  }
}

function assertId(name: string, value: string): void {
  if (!ID_PATTERN.test(value)) {
    throw new RangeError(
      `${name} ${JSON.stringify(value)} must match ${ID_PATTERN} (it becomes part of a blob name)`,
    );
  }
}

function assertCount(name: string, value: number): void {
  if (!isCount(value)) throw new RangeError(`${name} must be an integer >= 0, got ${value}`);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function padNumber(name: string, value: number, digits: number): string {
  assertCount(name, value);
  const text = String(value);
  if (text.length > digits) throw new RangeError(`${name} ${value} has more than ${digits} digits`);
  return text.padStart(digits, '0');
}

// A Uint8Array that crossed a thread boundary arrives without Buffer's prototype; view it, no copy.
function asBuffer(view: Uint8Array): Buffer {
  return Buffer.isBuffer(view) ? view : Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}
