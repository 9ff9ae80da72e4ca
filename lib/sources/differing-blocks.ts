// A resync's scan, whatever the source: read the frozen disk, hash every block in the replica
// checksum format and keep the blocks whose checksum differs from the replica's list. Only the
// differences are then sent. Blocks a source knows hold no data hash as zeros without being read.
import { CONTAINERS } from '../azure/blob-client';
import { coalesceExtents, touchesAny, type Extent } from '../disk/extents';
import { blockChecksum, checksumAt, parseChecksums, zeroChecksums } from '../segments/checksums';
import type { ChecksumSource } from './source-connector';

/** A frozen disk as the scan reads it. */
export interface ScannedDisk {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** Where data may be (NBD's allocation map); absent: everything is read. */
  dataExtents?: Extent[];
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
  const perRead = Math.max(1, Math.floor(SCAN_READ_BYTES / blockBytes));
  for (let first = 0; first < blocks; first += perRead) {
    const last = Math.min(blocks, first + perRead);
    const start = first * blockBytes;
    const end = Math.min(disk.size, last * blockBytes);
    if (!hasData(start, end - start)) {
      for (let i = first; i < last; i++) compare(i, zeroSum(blockAt(i).length));
    } else {
      const buf = await disk.read(start, end - start);
      for (let i = first; i < last; i++) {
        const { offset, length } = blockAt(i);
        compare(i, blockChecksum(buf.subarray(offset - start, offset - start + length)));
      }
    }
    onProgress?.(end);
  }
  return coalesceExtents(differing);
}
