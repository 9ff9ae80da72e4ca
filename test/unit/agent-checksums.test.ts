// A resync through the Mobility agent: the agent hashes its own snapshot (agent/tracking/
// checksums.ts) in OSR's checksum format, and the scan (lib/sources/differing-blocks.ts) keeps the
// blocks whose checksum differs from the replica's, reading none of the disk itself; an agent
// that cannot hash (older than the request) is read instead. The replica list is a real blob
// shape given by a stand-in for the blob service (only downloadToBuffer is called).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { blockChecksums, spanChecksums } from '../../agent/tracking/checksums';
import type { BlobStorage } from '../../lib/azure/blob-client';
import { differingBlocks } from '../../lib/sources/differing-blocks';
import { blockChecksum, CHECKSUM_BYTES, newChecksumList } from '../../lib/segments/checksums';

const KiB = 1024;
const BLOCK = 64 * KiB;
const LIMITS = { spanBytes: 64 * 1024 * KiB, readBytes: 4 * 1024 * KiB };

function replicaList(disk: Buffer): Buffer {
  const list = newChecksumList(BLOCK, disk.length);
  for (let i = 0; i < list.blocks; i++)
    blockChecksum(disk.subarray(i * BLOCK, Math.min(disk.length, (i + 1) * BLOCK))).copy(
      list.bytes,
      list.at(i),
    );
  return list.bytes;
}

function source(list: Buffer) {
  const blob = { downloadToBuffer: async () => list };
  const blobService = {
    getContainerClient: () => ({ getBlockBlobClient: () => blob }),
  } as unknown as BlobStorage;
  return { blobService, blob: 'web/vdb/checksums-65536.bin' };
}

test("the agent's block checksums are OSR's, the short last block hashed over its real length", () => {
  const disk = randomBytes(3 * BLOCK + 1000);
  const sums = blockChecksums(disk, BLOCK);
  assert.equal(sums.length, 4 * CHECKSUM_BYTES);
  assert.deepEqual(sums, replicaList(disk).subarray(32));
});

test('a resync through hashing sources reads no block of the disk and finds exactly the changed ones', async () => {
  const replica = randomBytes(40 * BLOCK + 512);
  const disk = Buffer.from(replica);
  for (const b of [0, 17, 40]) disk.writeUInt8(disk.readUInt8(b * BLOCK + 5) ^ 0xff, b * BLOCK + 5);
  let readBytes = 0;
  let hashedBytes = 0;
  const read = async (offset: number, length: number) => {
    readBytes += length;
    return disk.subarray(offset, offset + length);
  };
  const checksums = async (offset: number, length: number, blockBytes: number) => {
    hashedBytes += length;
    return spanChecksums(async (o, l) => disk.subarray(o, o + l), offset, length, blockBytes, LIMITS);
  };
  const found = await differingBlocks(
    { size: disk.length, read, checksums, checksumSpanBytes: 16 * BLOCK },
    source(replicaList(replica)),
  );
  assert.deepEqual(found, [
    { offset: 0, length: BLOCK },
    { offset: 17 * BLOCK, length: BLOCK },
    { offset: 40 * BLOCK, length: 512 },
  ]);
  assert.equal(readBytes, 0);
  assert.equal(hashedBytes, disk.length);
  // A source that cannot hash is read instead, with the same result.
  readBytes = 0;
  const older = await differingBlocks(
    { size: disk.length, read, checksums: async () => undefined, checksumSpanBytes: 16 * BLOCK },
    source(replicaList(replica)),
  );
  assert.deepEqual(older, found);
  assert.equal(readBytes, disk.length);
});

test('checksums are refused off a block boundary or over the span', async () => {
  const read = async (_o: number, l: number) => Buffer.alloc(l);
  await assert.rejects(spanChecksums(read, 100, BLOCK, BLOCK, LIMITS), /not a block boundary/);
  await assert.rejects(spanChecksums(read, 0, 1024 * 1024 * 1024, BLOCK, LIMITS), /at most/);
});
