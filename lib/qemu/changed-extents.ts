// Which extents of a frozen disk a cycle sends: full (allocated blocks), delta (the dirty
// bitmap) or resync (blocks whose checksum differs from the replica's).
import type { ChecksumSource } from '../sources/source-connector';
import type { TransferMode } from '../../shared/replication-types';
import { CONTAINERS } from '../azure/blob-client';
import { coalesceExtents as coalesce, touchesAny, type Extent } from '../disk/extents';
import { blockChecksum, checksumAt, parseChecksums, zeroChecksums } from '../segments/checksums';
import { NBD_STATE_DIRTY, NBD_STATE_HOLE, NBD_STATE_ZERO, type NbdClient } from './nbd-client';

export type { ChecksumSource };

export interface SourceExtentOptions {
  mode: TransferMode;
  bitmap?: string;
  checksums?: ChecksumSource;
  /** Called now and then during long scans (resync reads the whole disk), for heartbeats. */
  onProgress?: (bytesScanned: number) => void;
}

const RESYNC_READ_BYTES = 4 * 1024 * 1024;

export async function sourceExtents(nbd: NbdClient, options: SourceExtentOptions): Promise<Extent[]> {
  switch (options.mode) {
    case 'full':
      return dataExtents(nbd);
    case 'delta':
      if (!options.bitmap) throw new Error('a delta cycle needs the dirty bitmap of the frozen point');
      return dirtyExtents(nbd, { bitmap: options.bitmap });
    case 'resync':
      if (!options.checksums) throw new Error('a resync cycle needs the replica checksums');
      return differingBlocks(nbd, options.checksums, options.onProgress);
  }
}

/** Blocks holding data: neither holes nor known zeros (a fresh replica reads zeros there). */
async function dataExtents(nbd: NbdClient): Promise<Extent[]> {
  const all = await nbd.blockStatus(0, nbd.size, 'base:allocation');
  return coalesce(all.filter((e) => (e.flags & (NBD_STATE_HOLE | NBD_STATE_ZERO)) === 0));
}

/**
 * Reads the source's data blocks, hashes every block and keeps those whose checksum differs
 * from the replica's. Holes hash as zeros without being read. Only the differences are sent.
 */
async function differingBlocks(
  nbd: NbdClient,
  source: ChecksumSource,
  onProgress?: (n: number) => void,
): Promise<Extent[]> {
  const list = parseChecksums(
    await source.blobService
      .getContainerClient(CONTAINERS.cache)
      .getBlockBlobClient(source.blob)
      .downloadToBuffer(),
  );
  const blockBytes = list.blockBytes;
  const blocks = Math.ceil(nbd.size / blockBytes);
  const data = await dataExtents(nbd);
  const hasData = (offset: number, length: number) => touchesAny(data, offset, length);
  const zeroSum = zeroChecksums();
  const blockAt = (i: number) => ({
    offset: i * blockBytes,
    length: Math.min(blockBytes, nbd.size - i * blockBytes),
  });
  const differing: Extent[] = [];
  const compare = (i: number, sum: Buffer) => {
    // Beyond the replica's end (the disk grew) the replica reads as zeros.
    const theirs = i < list.blocks ? checksumAt(list, i) : zeroSum(blockAt(i).length);
    if (!sum.equals(theirs)) differing.push(blockAt(i));
  };
  const perRead = Math.max(1, Math.floor(RESYNC_READ_BYTES / blockBytes));
  for (let first = 0; first < blocks; first += perRead) {
    const last = Math.min(blocks, first + perRead);
    const start = first * blockBytes;
    const end = Math.min(nbd.size, last * blockBytes);
    if (!hasData(start, end - start)) {
      for (let i = first; i < last; i++) compare(i, zeroSum(blockAt(i).length));
    } else {
      const buf = await nbd.read(start, end - start);
      for (let i = first; i < last; i++) {
        const { offset, length } = blockAt(i);
        compare(i, blockChecksum(buf.subarray(offset - start, offset - start + length)));
      }
    }
    onProgress?.(end);
  }
  return coalesce(differing);
}

/** Dirty extents of a frozen disk: what changed since the previous point in time. */
export async function dirtyExtents(nbd: NbdClient, disk: { bitmap?: string }): Promise<Extent[]> {
  const all = await nbd.blockStatus(0, nbd.size, `qemu:dirty-bitmap:${disk.bitmap}`);
  return coalesce(all.filter((e) => (e.flags & NBD_STATE_DIRTY) !== 0));
}

/**
 * Extents holding data (neither hole nor known zeros). A full sync may skip the rest only if
 * its target reads as zeros there (a fresh replica).
 */
export function allocatedExtents(nbd: NbdClient): Promise<Extent[]> {
  return dataExtents(nbd);
}
