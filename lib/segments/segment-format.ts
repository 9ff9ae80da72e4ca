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
import type { Extent } from '../disk/extents';
import type { EncryptionKey, Keyring } from './keys';
import {
  SEGMENT_VERSION,
  SegmentVerificationError,
  assertCount,
  assertId,
  parseHeader,
  toWire,
  withWireJson,
  type SegmentHeader,
} from './segment-header';
import { compressIfSmaller, decompressExactly, splitZeroExtents } from './segment-payload';

export type { Extent } from '../disk/extents';
export {
  MAX_SEGMENT_RAW_BYTES,
  SECTOR_BYTES,
  SEGMENT_VERSION,
  SegmentVerificationError,
  type ExtentKind,
  type SegmentCompression,
  type SegmentExtent,
  type SegmentHeader,
  type SegmentRejectReason,
} from './segment-header';
export { ZERO_BLOCK_BYTES } from './segment-payload';
// Segment blob names belong to the cache layout; re-exported for the format's callers.
export { segmentBlobName, segmentCyclePrefix } from './cache-layout';

export const SEGMENT_MAGIC: Buffer = Buffer.from('OSRSEG1\0', 'latin1');
export const DEFAULT_COMPRESSION_LEVEL = 1;

const PREFIX_BYTES = SEGMENT_MAGIC.length + 4;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
// Worst case is one extent per sector: 8192 extents of ~60 JSON bytes each. Anything bigger is
// refused before parsing, so a hostile length field cannot make us parse megabytes of JSON.
const MAX_HEADER_BYTES = 1024 * 1024;

export interface SegmentInput {
  machine: string;
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

export function encodeSegment(input: SegmentInput, key: EncryptionKey): EncodedSegment {
  assertId('machine', input.machine);
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

  const header: SegmentHeader = withWireJson({
    version: SEGMENT_VERSION,
    machine: input.machine,
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
  });
  const headerBytes = Buffer.from(JSON.stringify(toWire(header)), 'utf8');
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

/**
 * The key id a segment names, read without verifying anything else (decodeSegment does that), so
 * a reader can fetch a key it lacks first; undefined when the segment is too damaged to say.
 */
export function peekKeyId(buffer: Uint8Array): string | undefined {
  const segment = asBuffer(buffer);
  if (segment.length < PREFIX_BYTES || !segment.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC))
    return;
  const headerLength = segment.readUInt32BE(SEGMENT_MAGIC.length);
  if (headerLength > MAX_HEADER_BYTES || PREFIX_BYTES + headerLength > segment.length) return;
  const header = segment.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength);
  const at = header.lastIndexOf('"keyId":"');
  if (at < 0) return;
  const id = header.toString('latin1', at + 9, at + 17);
  return /^[0-9a-f]{8}$/.test(id) ? id : undefined;
}

// A Uint8Array that crossed a thread boundary arrives without Buffer's prototype; view it, no copy.
function asBuffer(view: Uint8Array): Buffer {
  return Buffer.isBuffer(view) ? view : Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}
