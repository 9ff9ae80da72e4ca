// A resync's scan, whatever the source: read the frozen disk, hash every block in the replica
// checksum format and keep the blocks whose checksum differs from the replica's list. Only the
// differences are then sent. Blocks a source knows hold no data hash as zeros without being read.
import { CONTAINERS } from '../azure/blob-client';
import { coalesceExtents, touchesAny, type Extent } from '../disk/extents';
import {
  blockChecksum,
  CHECKSUM_BYTES,
  checksumAt,
  parseChecksums,
  zeroChecksums,
} from '../segments/checksums';
import type { ChecksumSource } from './source-connector';

/** A frozen disk as the scan reads it. */
export interface ScannedDisk {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** Where data may be (NBD's allocation map); absent: everything is read. */
  dataExtents?: Extent[];
  /**
   * The source hashes its own blocks (the Mobility agent): the checksums of [offset, offset +
   * length), 16 bytes a block; only they cross the network, not the disk. Undefined: not here.
   */
  checksums?(offset: number, length: number, blockBytes: number): Promise<Buffer | undefined>;
  /** The most one checksums call covers. */
  checksumSpanBytes?: number;
}

/** Blocks hashed per read. */
const SCAN_READ_BYTES = 4 * 1024 * 1024;

export async function differingBlocks(
  disk: ScannedDisk,
  source: ChecksumSource,
  onProgress?: (bytesScanned: number) => void,
): Promise<Extent[]> {
  const list = parseChecksums(
    await source.blobService
      .getContainerClient(CONTAINERS.cache)
      .getBlockBlobClient(source.blob)
      .downloadToBuffer(),
  );
  const blockBytes = list.blockBytes;
  const blocks = Math.ceil(disk.size / blockBytes);
  const hasData = (offset: number, length: number) =>
    !disk.dataExtents || touchesAny(disk.dataExtents, offset, length);
  const zeroSum = zeroChecksums();
  const blockAt = (i: number) => ({
    offset: i * blockBytes,
    length: Math.min(blockBytes, disk.size - i * blockBytes),
  });
  const differing: Extent[] = [];
  const compare = (i: number, sum: Buffer) => {
    // Beyond the replica's end (the disk grew) the replica reads as zeros.
    const theirs = i < list.blocks ? checksumAt(list, i) : zeroSum(blockAt(i).length);
    if (!sum.equals(theirs)) differing.push(blockAt(i));
  };
  let remote = !!disk.checksums;
  for (let first = 0; first < blocks; ) {
    const span = remote ? (disk.checksumSpanBytes ?? SCAN_READ_BYTES) : SCAN_READ_BYTES;
    const last = Math.min(blocks, first + Math.max(1, Math.floor(span / blockBytes)));
    const start = first * blockBytes;
    const end = Math.min(disk.size, last * blockBytes);
    if (!hasData(start, end - start)) {
      for (let i = first; i < last; i++) compare(i, zeroSum(blockAt(i).length));
    } else if (remote) {
      const sums = await disk.checksums?.(start, end - start, blockBytes);
      if (!sums) {
        remote = false; // the source cannot hash: read from here on
        continue;
      }
      if (sums.length !== (last - first) * CHECKSUM_BYTES)
        throw new Error(`the source sent ${sums.length} checksum bytes for ${last - first} blocks`);
      for (let i = first; i < last; i++)
        compare(i, sums.subarray((i - first) * CHECKSUM_BYTES, (i - first + 1) * CHECKSUM_BYTES));
    } else {
      const buf = await disk.read(start, end - start);
      for (let i = first; i < last; i++) {
        const { offset, length } = blockAt(i);
        compare(i, blockChecksum(buf.subarray(offset - start, offset - start + length)));
      }
    }
    onProgress?.(end);
    first = last;
  }
  return coalesceExtents(differing);
}
