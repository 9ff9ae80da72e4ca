// The payloads of structured reply chunks (NBD_REPLY_TYPE_*): each length and range checked
// before anything is read into a caller's buffer, so a hostile server gets a typed
// NbdProtocolError, never a RangeError, and a read never resolves with bytes no chunk filled.
import {
  REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_ERROR_BIT,
  REPLY_TYPE_ERROR_OFFSET,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA,
  REPLY_TYPE_OFFSET_HOLE,
  type NbdError,
  type NbdProtocolError,
  type Request,
} from './nbd-protocol';
import type { SocketReader } from './nbd-transport';

export interface ChunkFailures {
  broken(kind: string, message: string): NbdProtocolError;
  commandError(errno: number, detail: string): NbdError;
}

export async function readChunkPayload(
  reader: SocketReader,
  req: Request,
  type: number,
  length: number,
  fail: ChunkFailures,
): Promise<void> {
  const tooShort = (what: string, need: number): NbdProtocolError =>
    fail.broken('bad-length', `${what} chunk of ${length} bytes, needs ${need}`);

  if (type === REPLY_TYPE_OFFSET_DATA && req.target) {
    if (length < 8) throw tooShort('data', 8);
    const dataLen = length - 8;
    const at = Number((await reader.read(8)).readBigUInt64BE(0));
    const rel = at - req.offset;
    if (rel < 0 || rel + dataLen > req.length) {
      throw fail.broken(
        'out-of-range',
        `data chunk ${at}+${dataLen} is outside the read ${req.offset}+${req.length}`,
      );
    }
    fill(req, rel, dataLen, 'data', fail);
    await reader.readInto(req.target, (req.targetOffset ?? 0) + rel, dataLen);
  } else if (type === REPLY_TYPE_OFFSET_HOLE && req.target) {
    if (length !== 12) throw tooShort('hole', 12);
    const body = await reader.read(length);
    const at = Number(body.readBigUInt64BE(0));
    const holeLen = body.readUInt32BE(8);
    const rel = at - req.offset;
    if (rel < 0 || rel + holeLen > req.length) {
      throw fail.broken(
        'out-of-range',
        `hole chunk ${at}+${holeLen} is outside the read ${req.offset}+${req.length}`,
      );
    }
    fill(req, rel, holeLen, 'hole', fail);
    const base = (req.targetOffset ?? 0) + rel;
    req.target.fill(0, base, base + holeLen);
  } else if (type === REPLY_TYPE_BLOCK_STATUS && req.extents) {
    if (length < 12 || (length - 4) % 8 !== 0) throw tooShort('block status', 12);
    const body = await reader.read(length);
    if (body.readUInt32BE(0) === req.contextId) {
      for (let p = 4; p + 8 <= body.length; p += 8) {
        req.extents.push({ offset: 0, length: body.readUInt32BE(p), flags: body.readUInt32BE(p + 4) });
      }
    }
  } else if ((type & REPLY_TYPE_ERROR_BIT) !== 0) {
    const body = await reader.read(length);
    const errno = length >= 4 ? body.readUInt32BE(0) : 5;
    const msgLen = length >= 6 ? body.readUInt16BE(4) : 0;
    if (6 + msgLen > Math.max(6, length)) throw tooShort('error', 6 + msgLen);
    let detail = body.subarray(6, 6 + msgLen).toString('utf8');
    if (type === REPLY_TYPE_ERROR_OFFSET && body.length >= 6 + msgLen + 8) {
      detail += `${detail ? ' ' : ''}at offset ${body.readBigUInt64BE(6 + msgLen)}`;
    }
    req.error ??= fail.commandError(errno, detail);
  } else if (type !== REPLY_TYPE_NONE) {
    // A chunk type this client does not use: skip its payload.
    await reader.skip(length);
  }
}

/** Marks [rel, rel+length) of a read as filled; a chunk overlapping another is a broken reply. */
function fill(req: Request, rel: number, length: number, what: string, fail: ChunkFailures): void {
  const filled = (req.filled ??= []);
  if (filled.some(([a, b]) => rel < b && a < rel + length))
    throw fail.broken('overlap', `${what} chunk ${req.offset + rel}+${length} overlaps an earlier one`);
  filled.push([rel, rel + length]);
  req.covered = (req.covered ?? 0) + length;
}
