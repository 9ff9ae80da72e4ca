// Block checksums of a frozen snapshot, computed on the machine for a resync: only 16 bytes per
// block cross the network, and the blocks that differ from the replica are read afterwards. The
// format is OSR's checksum list's (lib/segments/checksums.ts; a unit test holds both to it).
import { createHash } from 'node:crypto';
import { TrackingError } from './errors';

const CHECKSUM_BYTES = 16;

/** Checksums of the blocks of `buf`, which starts on a block boundary. */
export function blockChecksums(buf: Buffer, blockBytes: number): Buffer {
  const out = Buffer.alloc(Math.ceil(buf.length / blockBytes) * CHECKSUM_BYTES);
  for (let at = 0, i = 0; at < buf.length; at += blockBytes, i++)
    createHash('sha256')
      .update(buf.subarray(at, Math.min(buf.length, at + blockBytes)))
      .digest()
      .copy(out, i * CHECKSUM_BYTES, 0, CHECKSUM_BYTES);
  return out;
}

/**
 * The checksums of [offset, offset + length), read through `read` at most `limits.readBytes` at a
 * time; a span over `limits.spanBytes` is refused (the protocol's limits, given by the caller).
 */
export async function spanChecksums(
  read: (offset: number, length: number) => Promise<Buffer>,
  offset: number,
  length: number,
  blockBytes: number,
  limits: { spanBytes: number; readBytes: number },
): Promise<Buffer> {
  if (
    !Number.isInteger(blockBytes) ||
    blockBytes < 512 ||
    blockBytes > limits.readBytes ||
    offset % blockBytes
  )
    throw new TrackingError(
      'Error',
      `checksums of ${blockBytes}-byte blocks from ${offset}: not a block boundary or size`,
    );
  if (length > limits.spanBytes)
    throw new TrackingError('Error', `checksums of at most ${limits.spanBytes} bytes, not ${length}`);
  const step = Math.floor(limits.readBytes / blockBytes) * blockBytes;
  const parts: Buffer[] = [];
  for (let done = 0; done < length; done += step)
    parts.push(blockChecksums(await read(offset + done, Math.min(step, length - done)), blockBytes));
  return Buffer.concat(parts);
}
