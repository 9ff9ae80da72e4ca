// The checksum list of a disk, block by block, for a resync: the applier computes it over a
// replica (and the master target over an original disk), the process server computes the same
// checksums at the source and sends only the blocks that differ. Lists are stored as blobs in the
// cache container (cache-layout.ts: checksumsBlobName), never returned in a payload (a 1 TiB disk
// in 64 KiB blocks has 16 M of them).
//
// Block i covers bytes [i*blockBytes, min((i+1)*blockBytes, sizeBytes)) of the disk: the last block
// may be shorter, and is hashed over its real length. checksum = first 16 bytes of SHA-256.
//
// Blob format, integers big-endian:
//   offset 0   8 bytes   magic "OSRSUM1\0"
//   offset 8   4 bytes   blockBytes
//   offset 12  4 bytes   checksum bytes per block (16)
//   offset 16  8 bytes   sizeBytes of the disk
//   offset 24  8 bytes   number of blocks
//   offset 32            the checksums, block 0 first
import { createHash } from 'node:crypto';

export const CHECKSUM_BYTES = 16;
export const CHECKSUMS_MAGIC: Buffer = Buffer.from('OSRSUM1\0', 'latin1');
export const CHECKSUMS_HEADER_BYTES = 32;

export interface ChecksumList {
  blockBytes: number;
  sizeBytes: number;
  blocks: number;
  /** blocks × 16 bytes. */
  checksums: Buffer;
}

/** The checksum of one block: SHA-256 truncated to 16 bytes. */
export function blockChecksum(block: Uint8Array): Buffer {
  return createHash('sha256').update(block).digest().subarray(0, CHECKSUM_BYTES);
}

/** The checksum of `length` zero bytes, computed once per length (holes hash as zeros unread). */
export function zeroChecksums(): (length: number) => Buffer {
  const sums = new Map<number, Buffer>();
  return (length) => {
    let sum = sums.get(length);
    if (!sum) sums.set(length, (sum = blockChecksum(Buffer.alloc(length))));
    return sum;
  };
}

/** A list of `sizeBytes` in blocks of `blockBytes`, header written, checksums all zero bytes. */
export function newChecksumList(
  blockBytes: number,
  sizeBytes: number,
): { bytes: Buffer; blocks: number; at: (block: number) => number } {
  const blocks = Math.ceil(sizeBytes / blockBytes);
  const bytes = Buffer.alloc(CHECKSUMS_HEADER_BYTES + blocks * CHECKSUM_BYTES);
  CHECKSUMS_MAGIC.copy(bytes, 0);
  bytes.writeUInt32BE(blockBytes, 8);
  bytes.writeUInt32BE(CHECKSUM_BYTES, 12);
  bytes.writeBigUInt64BE(BigInt(sizeBytes), 16);
  bytes.writeBigUInt64BE(BigInt(blocks), 24);
  return { bytes, blocks, at: (block) => CHECKSUMS_HEADER_BYTES + block * CHECKSUM_BYTES };
}

/** Parses a checksum blob; throws on anything malformed. */
export function parseChecksums(bytes: Buffer): ChecksumList {
  if (
    bytes.length < CHECKSUMS_HEADER_BYTES ||
    !bytes.subarray(0, CHECKSUMS_MAGIC.length).equals(CHECKSUMS_MAGIC)
  ) {
    throw new Error('not an OSR checksum list');
  }
  const blockBytes = bytes.readUInt32BE(8);
  const hashBytes = bytes.readUInt32BE(12);
  const sizeBytes = Number(bytes.readBigUInt64BE(16));
  const blocks = Number(bytes.readBigUInt64BE(24));
  if (hashBytes !== CHECKSUM_BYTES || blockBytes === 0 || blocks !== Math.ceil(sizeBytes / blockBytes)) {
    throw new Error('checksum list header is inconsistent');
  }
  const expected = CHECKSUMS_HEADER_BYTES + blocks * CHECKSUM_BYTES;
  if (bytes.length !== expected) {
    throw new Error(`checksum list has ${bytes.length} bytes, its header says ${expected}`);
  }
  return { blockBytes, sizeBytes, blocks, checksums: bytes.subarray(CHECKSUMS_HEADER_BYTES) };
}

/** Checksum of block i of a parsed list. */
export function checksumAt(list: ChecksumList, block: number): Buffer {
  if (!Number.isInteger(block) || block < 0 || block >= list.blocks)
    throw new RangeError(`no block ${block}`);
  return list.checksums.subarray(block * CHECKSUM_BYTES, (block + 1) * CHECKSUM_BYTES);
}
