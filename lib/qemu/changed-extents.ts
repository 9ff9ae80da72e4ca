// Which extents of a frozen disk a cycle sends: full (allocated blocks), delta (the dirty
// bitmap) or resync (blocks whose checksum differs from the replica's).
import type { ChecksumSource } from '../sources/source-connector';
import type { TransferMode } from '../../shared/replication-types';
import { coalesceExtents as coalesce, type Extent } from '../disk/extents';
import { differingBlocks } from '../sources/differing-blocks';
import { NBD_STATE_DIRTY, NBD_STATE_HOLE, NBD_STATE_ZERO, type NbdClient } from './nbd-client';

export type { ChecksumSource };

export interface SourceExtentOptions {
  mode: TransferMode;
  bitmap?: string;
  checksums?: ChecksumSource;
  /** Called now and then during long scans (resync reads the whole disk), for heartbeats. */
  onProgress?: (bytesScanned: number) => void;
}

export async function sourceExtents(nbd: NbdClient, options: SourceExtentOptions): Promise<Extent[]> {
  switch (options.mode) {
    case 'full':
      return dataExtents(nbd);
    case 'delta':
      if (!options.bitmap) throw new Error('a delta cycle needs the dirty bitmap of the frozen point');
      return dirtyExtents(nbd, { bitmap: options.bitmap });
    case 'resync':
      if (!options.checksums) throw new Error('a resync cycle needs the replica checksums');
      return differingBlocks(
        { size: nbd.size, read: (o, l) => nbd.read(o, l), dataExtents: await dataExtents(nbd) },
        options.checksums,
        options.onProgress,
      );
  }
}

/** Blocks holding data: neither holes nor known zeros (a fresh replica reads zeros there). */
async function dataExtents(nbd: NbdClient): Promise<Extent[]> {
  const all = await nbd.blockStatus(0, nbd.size, 'base:allocation');
  return coalesce(all.filter((e) => (e.flags & (NBD_STATE_HOLE | NBD_STATE_ZERO)) === 0));
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
