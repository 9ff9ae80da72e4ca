// The payload of a segment before encryption: which parts of the extents are zeros (sent as
// 'zero' extents, no bytes), and zstd compression when it makes the data smaller.
import { CCtx, compressBound, DCtx } from 'zstd-napi/binding';
import type { Extent } from '../disk/extents';
import {
  MAX_SEGMENT_RAW_BYTES,
  SegmentVerificationError,
  assertExtent,
  type ExtentKind,
  type SegmentExtent,
} from './segment-header';

/** Zero detection granularity inside an extent: coarse enough to cost nothing on non-zero data. */
export const ZERO_BLOCK_BYTES = 64 * 1024;

export interface ZeroSplit {
  extents: SegmentExtent[];
  dataPieces: Buffer[];
  rawLength: number;
  dataLength: number;
}

// Classifies each extent, piece by piece on 64 KiB disk-aligned blocks, as data or zero, and
// merges neighbours of one kind. Buffer.equals is a memcmp that stops at the first non-zero
// byte, so random data costs almost nothing and zero data runs at memory speed.
export function splitZeroExtents(input: readonly Extent[], data: Buffer): ZeroSplit {
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

export function compressIfSmaller(payload: Buffer, level: number): Buffer | undefined {
  if (payload.length === 0) return undefined;
  cctx ??= new CCtx();
  scratch ??= Buffer.allocUnsafeSlow(compressBound(MAX_SEGMENT_RAW_BYTES));
  const written = cctx.compress(scratch, payload, level);
  // The scratch view is consumed (encrypted) before the next call on this thread reuses it.
  return written < payload.length ? scratch.subarray(0, written) : undefined;
}

export function decompressExactly(body: Buffer, dataLength: number): Buffer {
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
