// Checksums of a replica, block by block, for a resync (format: lib/segments/checksums.ts),
// stored in the cache container under checksumsBlobName.
import { RestError } from '@azure/storage-blob';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import { CONTAINERS, type BlobStorage } from '../../lib/azure/blob-client';
import { checksumsBlobName } from '../../lib/segments/cache-layout';
import { readVhdBlobState } from '../../lib/azure/vhd-blob';
import {
  blockChecksum,
  newChecksumList,
  parseChecksums,
  type ChecksumList,
} from '../../lib/segments/checksums';
import type { ApplierDeps } from './replica-disk';
import {
  PAGE_BYTES,
  REPLICA_MISSING,
  forEachLimited,
  isNotFound,
  listPages,
  replicaBlobClient,
  replicaBlobName,
} from './replica-disk';

const MAX_BLOCK_BYTES = 64 * 1024 * 1024;
/** Consecutive blocks with pages are read this many bytes at a time (at least one block). */
const READ_BYTES = 8 * 1024 * 1024;
/** Failure type: the replica changed while it was being read. Retryable. */
export const REPLICA_CHANGED = FAILURE.ReplicaChanged;

export interface ReplicaChecksumsInput {
  machine: string;
  diskId: string;
  /** A multiple of 512, at most 64 MiB. */
  blockBytes: number;
  /** Range reads at once; default 4. */
  concurrency?: number;
}

export interface ReplicaChecksumsResult {
  /** Blob name in osr-cache. */
  blob: string;
  blocks: number;
  blockBytes: number;
  /** Size of the replica the checksums cover. */
  sizeBytes: number;
}

export async function replicaChecksums(
  deps: Pick<ApplierDeps, 'blobService'>,
  input: ReplicaChecksumsInput,
): Promise<ReplicaChecksumsResult> {
  const { blockBytes } = input;
  if (
    !Number.isSafeInteger(blockBytes) ||
    blockBytes <= 0 ||
    blockBytes % PAGE_BYTES !== 0 ||
    blockBytes > MAX_BLOCK_BYTES
  ) {
    throw new RangeError(
      `blockBytes must be a multiple of ${PAGE_BYTES} up to ${MAX_BLOCK_BYTES}, got ${blockBytes}`,
    );
  }
  const name = checksumsBlobName(input.machine, input.diskId, blockBytes);
  const replica = replicaBlobClient(deps.blobService, replicaBlobName(input.machine, input.diskId));

  let sizeBytes: number;
  let etag: string;
  try {
    const props = await replica.getProperties();
    etag = props.etag ?? '';
    // Only the data area: a replica is a fixed VHD, its footer is no part of the disk.
    sizeBytes = (
      await readVhdBlobState(
        replica,
        { blobBytes: props.contentLength ?? 0, metadata: props.metadata ?? {} },
        etag ? { ifMatch: etag } : undefined,
      )
    ).dataBytes;
  } catch (err) {
    if (isNotFound(err)) {
      throw ApplicationFailure.nonRetryable(
        `disk ${input.diskId} of ${input.machine} has no replica (${CONTAINERS.replica}/${replica.name}) to compare with: do a full sync`,
        REPLICA_MISSING,
      );
    }
    throw err;
  }
  // Every read is conditional on the version we sized: a write in between fails it with 412.
  const conditions = etag ? { ifMatch: etag } : undefined;
  const { bytes: list, blocks, at } = newChecksumList(blockBytes, sizeBytes);

  try {
    // Blocks without any page are zeros: their checksum is computed once.
    const zero = blockChecksum(Buffer.alloc(blockBytes));
    for (let b = 0; b < blocks; b++) zero.copy(list, at(b));
    const tail = sizeBytes - (blocks - 1) * blockBytes;
    if (blocks > 0 && tail < blockBytes) blockChecksum(Buffer.alloc(tail)).copy(list, at(blocks - 1));

    // Runs of consecutive blocks that hold at least one page, cut into reads of about READ_BYTES.
    const reads: { first: number; count: number }[] = [];
    const perRead = Math.max(1, Math.floor(READ_BYTES / blockBytes));
    let runFirst = -1;
    let runEnd = -1; // exclusive block index
    const flushRun = (): void => {
      for (let b = runFirst; b < runEnd; b += perRead)
        reads.push({ first: b, count: Math.min(perRead, runEnd - b) });
    };
    for (const range of await listPages(replica, sizeBytes, { conditions })) {
      const first = Math.floor(range.offset / blockBytes);
      const end = Math.min(blocks, Math.ceil((range.offset + range.length) / blockBytes));
      if (runFirst >= 0 && first <= runEnd) {
        runEnd = Math.max(runEnd, end);
      } else {
        if (runFirst >= 0) flushRun();
        runFirst = first;
        runEnd = end;
      }
    }
    if (runFirst >= 0) flushRun();

    await forEachLimited(reads, input.concurrency ?? 4, async ({ first, count }) => {
      const offset = first * blockBytes;
      const length = Math.min(count * blockBytes, sizeBytes - offset);
      const data = await replica.downloadToBuffer(offset, length, { conditions });
      if (data.length !== length)
        throw new Error(`read ${data.length} of ${length} bytes at ${offset} of ${replica.name}`);
      for (let b = 0; b < count; b++) {
        blockChecksum(data.subarray(b * blockBytes, Math.min(length, (b + 1) * blockBytes))).copy(
          list,
          at(first + b),
        );
      }
    });
  } catch (err) {
    if (err instanceof RestError && err.statusCode === 412) {
      throw ApplicationFailure.retryable(
        `replica ${replica.name} was written while its checksums were computed; computing them again`,
        REPLICA_CHANGED,
      );
    }
    throw err;
  }

  await deps.blobService
    .getContainerClient(CONTAINERS.cache)
    .getBlockBlobClient(name)
    .uploadData(list, { blobHTTPHeaders: { blobContentType: 'application/octet-stream' } });
  return { blob: name, blocks, blockBytes, sizeBytes };
}

/** Reads the list replicaChecksums stored; undefined if there is none. */
export async function readReplicaChecksums(
  blobService: BlobStorage,
  machine: string,
  diskId: string,
  blockBytes: number,
): Promise<ChecksumList | undefined> {
  const blob = blobService
    .getContainerClient(CONTAINERS.cache)
    .getBlobClient(checksumsBlobName(machine, diskId, blockBytes));
  try {
    return parseChecksums(await blob.downloadToBuffer());
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
