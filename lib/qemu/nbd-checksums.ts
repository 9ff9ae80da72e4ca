// Checksums of a disk served over NBD (the master target's original disks), block by block, in exactly the format (and block size) of the
// replica checksums (lib/segments/checksums.ts), so that the recovery-site process server's
// existing `resync` transfer compares the failed-over disk against them and sends only the blocks
// that differ. The list is stored in osr-cache, never in a payload. Holes and known-zero ranges
// (base:allocation) hash as zeros without being read.
import { CONTAINERS, type BlobStorage } from '../azure/blob-client';
import { checksumsBlobName } from '../segments/cache-layout';
import { blockChecksum, newChecksumList, zeroChecksums } from '../segments/checksums';
import { touchesAny } from '../disk/extents';
import { allocatedExtents } from './changed-extents';
import { NbdClient } from './nbd-client';
import type { FailbackTargetDisk } from '../../shared/failback-types';

const READ_BYTES = 4 * 1024 * 1024;

export interface TargetChecksumsInput {
  /** Name the list is stored under (the reverse direction's id). */
  listId: string;
  disk: FailbackTargetDisk;
  blockBytes: number;
}

export async function targetChecksums(
  deps: { blobService: BlobStorage },
  input: TargetChecksumsInput,
  onProgress?: (bytes: number) => void,
): Promise<{ blob: string; blocks: number; bytesRead: number }> {
  const { blockBytes, disk } = input;
  if (!disk.nbdSocket || disk.exportName === undefined)
    throw new Error(`target disk ${disk.diskId} has no NBD export`);
  const nbd = await NbdClient.connect({
    socket: disk.nbdSocket,
    exportName: disk.exportName,
    metaContexts: ['base:allocation'],
  });
  try {
    const size = nbd.size;
    const { bytes: list, blocks, at } = newChecksumList(blockBytes, size);
    const data = await allocatedExtents(nbd);
    const hasData = (offset: number, length: number) => touchesAny(data, offset, length);
    const zeroSum = zeroChecksums();
    const perRead = Math.max(1, Math.floor(READ_BYTES / blockBytes));
    let bytesRead = 0;
    for (let first = 0; first < blocks; first += perRead) {
      const last = Math.min(blocks, first + perRead);
      const start = first * blockBytes;
      const end = Math.min(size, last * blockBytes);
      const buf = hasData(start, end - start) ? await nbd.read(start, end - start) : undefined;
      if (buf) bytesRead += buf.length;
      for (let b = first; b < last; b++) {
        const offset = b * blockBytes;
        const length = Math.min(blockBytes, size - offset);
        const sum = buf
          ? blockChecksum(buf.subarray(offset - start, offset - start + length))
          : zeroSum(length);
        sum.copy(list, at(b));
      }
      onProgress?.(end);
    }
    const blob = checksumsBlobName(input.listId, disk.diskId, blockBytes);
    await deps.blobService
      .getContainerClient(CONTAINERS.cache)
      .getBlockBlobClient(blob)
      .uploadData(list, { blobHTTPHeaders: { blobContentType: 'application/octet-stream' } });
    return { blob, blocks, bytesRead };
  } finally {
    await nbd.close();
  }
}
