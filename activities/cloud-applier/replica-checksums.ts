// Checksums of a replica, block by block, for a resync: the process server computes the same
// checksums at the source and sends only the blocks that differ. They are stored as a blob in the
// cache container, never returned in a payload (a 1 TiB disk in 64 KiB blocks has 16 M of them).
//
// Block i covers bytes [i*blockBytes, min((i+1)*blockBytes, sizeBytes)) of the disk: the last block
// may be shorter, and is hashed over its real length. checksum = first 16 bytes of SHA-256.
//
// Blob format (osr-cache/<machine>/<diskId>/checksums-<blockBytes>.bin), integers big-endian:
//   offset 0   8 bytes   magic "OSRSUM1\0"
//   offset 8   4 bytes   blockBytes
//   offset 12  4 bytes   checksum bytes per block (16)
//   offset 16  8 bytes   sizeBytes of the replica
//   offset 24  8 bytes   number of blocks
//   offset 32            the checksums, block 0 first
import { createHash } from 'node:crypto';
import type { BlobServiceClient } from '@azure/storage-blob';
import { RestError } from '@azure/storage-blob';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { ApplierDeps } from './replica-disk';
import {
  PAGE_BYTES,
  REPLICA_MISSING,
  assertId,
  forEachLimited,
  isNotFound,
  listPages,
  replicaBlobClient,
  replicaBlobName,
} from './replica-disk';

export const CHECKSUM_BYTES = 16;
export const CHECKSUMS_MAGIC: Buffer = Buffer.from('OSRSUM1\0', 'latin1');
const HEADER_BYTES = 32;
const MAX_BLOCK_BYTES = 64 * 1024 * 1024;
/** Consecutive blocks with pages are read this many bytes at a time (at least one block). */
const READ_BYTES = 8 * 1024 * 1024;
/** Failure type: the replica changed while it was being read. Retryable. */
export const REPLICA_CHANGED = FAILURE.ReplicaChanged;

/** The checksum of one block: SHA-256 truncated to 16 bytes. */
export function blockChecksum(block: Uint8Array): Buffer {
  return createHash('sha256').update(block).digest().subarray(0, CHECKSUM_BYTES);
}

export function checksumsBlobName(machine: string, diskId: string, blockBytes: number): string {
  assertId('machine', machine);
  assertId('diskId', diskId);
  return `${machine}/${diskId}/checksums-${blockBytes}.bin`;
}

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

export interface ChecksumList {
  blockBytes: number;
  sizeBytes: number;
  blocks: number;
  /** blocks × 16 bytes. */
  checksums: Buffer;
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
    sizeBytes = props.contentLength ?? 0;
    etag = props.etag ?? '';
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
  const blocks = Math.ceil(sizeBytes / blockBytes);
  const list = Buffer.alloc(HEADER_BYTES + blocks * CHECKSUM_BYTES);
  CHECKSUMS_MAGIC.copy(list, 0);
  list.writeUInt32BE(blockBytes, 8);
  list.writeUInt32BE(CHECKSUM_BYTES, 12);
  list.writeBigUInt64BE(BigInt(sizeBytes), 16);
  list.writeBigUInt64BE(BigInt(blocks), 24);
  const at = (block: number): number => HEADER_BYTES + block * CHECKSUM_BYTES;

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

/** Parses a checksum blob; throws on anything malformed. */
export function parseChecksums(bytes: Buffer): ChecksumList {
  if (bytes.length < HEADER_BYTES || !bytes.subarray(0, CHECKSUMS_MAGIC.length).equals(CHECKSUMS_MAGIC)) {
    throw new Error('not an OSR checksum list');
  }
  const blockBytes = bytes.readUInt32BE(8);
  const hashBytes = bytes.readUInt32BE(12);
  const sizeBytes = Number(bytes.readBigUInt64BE(16));
  const blocks = Number(bytes.readBigUInt64BE(24));
  if (hashBytes !== CHECKSUM_BYTES || blockBytes === 0 || blocks !== Math.ceil(sizeBytes / blockBytes)) {
    throw new Error('checksum list header is inconsistent');
  }
  if (bytes.length !== HEADER_BYTES + blocks * CHECKSUM_BYTES) {
    throw new Error(
      `checksum list has ${bytes.length} bytes, its header says ${HEADER_BYTES + blocks * CHECKSUM_BYTES}`,
    );
  }
  return { blockBytes, sizeBytes, blocks, checksums: bytes.subarray(HEADER_BYTES) };
}

/** Checksum of block i of a parsed list. */
export function checksumAt(list: ChecksumList, block: number): Buffer {
  if (!Number.isInteger(block) || block < 0 || block >= list.blocks)
    throw new RangeError(`no block ${block}`);
  return list.checksums.subarray(block * CHECKSUM_BYTES, (block + 1) * CHECKSUM_BYTES);
}

/** Reads the list replicaChecksums stored; undefined if there is none. */
export async function readReplicaChecksums(
  blobService: BlobServiceClient,
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
