// The header of a segment (see segment-format.ts for the whole layout): its fields, how it is
// checked field by field before anything in it is trusted, and the checks shared with encoding.
//
// On the wire the machine is stored under the JSON key `machineId` (authenticated as part of the
// GCM associated data); in TypeScript it is `machine`, like everywhere else in OSR. toWire and
// parseHeader translate, so segments written before and after the rename are byte-identical.
import type { Extent } from '../disk/extents';

export const SEGMENT_VERSION = 1;
/** Disk addressing unit: page blobs take 512-byte pages. */
export const SECTOR_BYTES = 512;
/** Raw bytes one segment may cover: the most one Azure uploadPages call accepts. */
export const MAX_SEGMENT_RAW_BYTES = 4 * 1024 * 1024;

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HEX_SHA256 = /^[0-9a-f]{64}$/;
const HEX_NONCE = /^[0-9a-f]{24}$/;
const HEX_KEY_ID = /^[0-9a-f]{8}$/;

export type ExtentKind = 'data' | 'zero';
export type SegmentCompression = 'zstd' | 'none';

export interface SegmentExtent extends Extent {
  kind: ExtentKind;
}

export interface SegmentHeader {
  version: typeof SEGMENT_VERSION;
  machine: string;
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

/** The header as serialized: same fields, the machine under its wire key `machineId`. */
type WireHeader = Omit<SegmentHeader, 'machine'> & { machineId: string };

/**
 * Makes `header` serialize (JSON.stringify) to its wire form, so a header logged, stored or
 * measured reads as it does in the segment. Not enumerable: comparisons and copies ignore it.
 */
export function withWireJson(header: SegmentHeader): SegmentHeader {
  return Object.defineProperty(header, 'toJSON', {
    value(this: SegmentHeader) {
      return toWire(this);
    },
    enumerable: false,
  });
}

/** The JSON object written for `header`, keys in the order segments have always had. */
export function toWire(header: SegmentHeader): WireHeader {
  return {
    version: header.version,
    machineId: header.machine,
    diskId: header.diskId,
    cycle: header.cycle,
    index: header.index,
    extents: header.extents,
    rawLength: header.rawLength,
    dataLength: header.dataLength,
    sha256: header.sha256,
    compression: header.compression,
    payloadLength: header.payloadLength,
    nonce: header.nonce,
    keyId: header.keyId,
  } as WireHeader;
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

// Every field is checked before any is trusted: the header is read before authentication.
export function parseHeader(bytes: Buffer): SegmentHeader {
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
      `segment format version ${h.version} was written by a newer OSR; this build reads version ` +
        `${SEGMENT_VERSION}: upgrade OSR on this host to the release the process servers run`,
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
  const header = h as unknown as WireHeader;
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
  const { machineId, ...rest } = header;
  return withWireJson({ ...rest, machine: machineId, extents });
}

export function assertExtent(extent: Extent, previousEnd: number): void {
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

export function assertId(name: string, value: string): void {
  if (!ID_PATTERN.test(value)) {
    throw new RangeError(
      `${name} ${JSON.stringify(value)} must match ${ID_PATTERN} (it becomes part of a blob name)`,
    );
  }
}

export function assertCount(name: string, value: number): void {
  if (!isCount(value)) throw new RangeError(`${name} must be an integer >= 0, got ${value}`);
}

export function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

export function padNumber(name: string, value: number, digits: number): string {
  assertCount(name, value);
  const text = String(value);
  if (text.length > digits) throw new RangeError(`${name} ${value} has more than ${digits} digits`);
  return text.padStart(digits, '0');
}
