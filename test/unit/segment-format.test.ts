// Segment wire format: round trips, zero extents, and that every kind of damage is refused
// without yielding data (invariant 4: a segment that fails verification is never applied).
import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { CCtx, compressBound } from 'zstd-napi/binding';
import { EncryptionKey, Keyring } from '../../lib/segments/keys';
import {
  decodeSegment,
  encodeSegment,
  MAX_SEGMENT_RAW_BYTES,
  SEGMENT_MAGIC,
  segmentBlobName,
  segmentCyclePrefix,
  SegmentVerificationError,
} from '../../lib/segments/segment-format';
import type {
  Extent,
  SegmentHeader,
  SegmentInput,
  SegmentRejectReason,
} from '../../lib/segments/segment-format';

const KiB = 1024;
const MiB = 1024 * KiB;

function compressibleText(length: number, seed = 1): Buffer {
  const words = ['block', 'sector', 'write', 'replica', 'cycle', 'snapshot', 'kernel', 'error', 'ok'];
  const out = Buffer.alloc(length);
  let state = seed >>> 0 || 1;
  let at = 0;
  while (at < length) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    const word = state % 4 === 0 ? String(state % 100000) : words[state % words.length]!;
    at += out.write(`${word}${state % 7 === 0 ? '\n' : ' '}`, at);
  }
  return out;
}

interface Sample {
  extents: Extent[];
  data: Buffer;
}

// Random, compressible and zero extents with gaps between them, plus zero 64 KiB blocks inside
// an otherwise random extent.
function mixedSample(): Sample {
  const pieces: Array<[number, Buffer]> = [
    [0, randomBytes(128 * KiB)],
    [1 * MiB, compressibleText(256 * KiB)],
    [2 * MiB, Buffer.alloc(192 * KiB)],
    [3 * MiB, Buffer.concat([randomBytes(64 * KiB), Buffer.alloc(128 * KiB), randomBytes(64 * KiB)])],
    [3 * MiB + 256 * KiB, randomBytes(512)], // adjacent to the previous extent, one sector long
    [5 * MiB + 512, Buffer.alloc(4 * KiB)], // small zero extent, not 64 KiB aligned
  ];
  return {
    extents: pieces.map(([offset, bytes]) => ({ offset, length: bytes.length })),
    data: Buffer.concat(pieces.map(([, bytes]) => bytes)),
  };
}

function input(sample: Sample, over: Partial<SegmentInput> = {}): SegmentInput {
  return { machine: 'vm-01', diskId: 'disk0', cycle: 7, index: 3, ...sample, ...over };
}

// Rebuilds disk contents from a decoded segment: byte offset -> byte, for comparison with the input.
function expand(header: SegmentHeader, data: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let at = 0;
  for (const extent of header.extents) {
    if (extent.kind === 'zero') {
      out.set(extent.offset, Buffer.alloc(extent.length));
    } else {
      out.set(extent.offset, data.subarray(at, at + extent.length));
      at += extent.length;
    }
  }
  assert.equal(at, data.length, 'data holds exactly the data extents');
  return out;
}

function readDisk(image: Map<number, Buffer>, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length, 0xee);
  for (const [start, bytes] of image) {
    const from = Math.max(start, offset);
    const to = Math.min(start + bytes.length, offset + length);
    if (from < to) bytes.copy(out, from - offset, from - start, to - start);
  }
  return out;
}

function assertRejected(segment: Buffer, keyring: Keyring, reason?: SegmentRejectReason): void {
  let decoded: unknown;
  try {
    decoded = decodeSegment(segment, keyring);
  } catch (err) {
    assert.ok(
      err instanceof SegmentVerificationError,
      `expected SegmentVerificationError, got ${String(err)}`,
    );
    if (reason !== undefined) assert.equal(err.reason, reason, err.message);
    return;
  }
  assert.fail(`segment was accepted and yielded ${(decoded as { data: Buffer }).data.length} bytes`);
}

// An independent writer that follows the documented layout, used to build segments whose header
// is authentic but whose content is wrong (which the real encoder never produces).
function seal(header: Record<string, unknown>, payload: Buffer, keyBytes: Buffer): Buffer {
  const headerBytes = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(12);
  SEGMENT_MAGIC.copy(prefix);
  prefix.writeUInt32BE(headerBytes.length, 8);
  const aad = Buffer.concat([prefix, headerBytes]);
  const cipher = createCipheriv('aes-256-gcm', keyBytes, Buffer.from(String(header.nonce), 'hex'));
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(payload), cipher.final()]);
  return Buffer.concat([aad, body, cipher.getAuthTag()]);
}

function forgedHeader(over: Record<string, unknown>): Record<string, unknown> {
  return {
    version: 1,
    machineId: 'vm-01',
    diskId: 'disk0',
    cycle: 1,
    index: 0,
    extents: [{ offset: 0, length: 1024, kind: 'data' }],
    rawLength: 1024,
    dataLength: 1024,
    sha256: '',
    compression: 'none',
    payloadLength: 1024,
    nonce: randomBytes(12).toString('hex'),
    keyId: '',
    ...over,
  };
}

describe('segment format', () => {
  const keyBytes = randomBytes(32);
  const key = EncryptionKey.fromBytes(keyBytes);
  const keyring = new Keyring([key]);

  test('round trip of random, compressible and zero extents rebuilds every byte', () => {
    const sample = mixedSample();
    const { segment, header, stats } = encodeSegment(input(sample), key);
    const decoded = decodeSegment(segment, keyring);
    assert.deepEqual(decoded.header, header);
    const image = expand(decoded.header, decoded.data);
    let at = 0;
    for (const extent of sample.extents) {
      const expected = sample.data.subarray(at, at + extent.length);
      assert.ok(readDisk(image, extent.offset, extent.length).equals(expected), `extent at ${extent.offset}`);
      at += extent.length;
    }
    const covered = decoded.header.extents.reduce((n, e) => n + e.length, 0);
    assert.equal(covered, sample.data.length, 'segment covers exactly the input extents');
    assert.equal(stats.rawBytes, sample.data.length);
    assert.equal(stats.zeroBytes, 192 * KiB + 128 * KiB + 4 * KiB);
    assert.equal(stats.segmentBytes, segment.length);
    assert.equal(header.compression, 'zstd');
    assert.ok(stats.payloadBytes < header.dataLength, 'text compresses');
    assert.deepEqual(
      [header.machine, header.diskId, header.cycle, header.index, header.keyId],
      ['vm-01', 'disk0', 7, 3, key.id],
    );
  });

  test('zero extents carry no payload; zero 64 KiB blocks inside an extent are split out', () => {
    const zeros = encodeSegment(
      input({ extents: [{ offset: 0, length: 4 * MiB }], data: Buffer.alloc(4 * MiB) }),
      key,
    );
    assert.equal(zeros.header.payloadLength, 0);
    assert.equal(zeros.stats.zeroBytes, 4 * MiB);
    assert.deepEqual(zeros.header.extents, [{ offset: 0, length: 4 * MiB, kind: 'zero' }]);
    assert.equal(zeros.segment.length, 12 + Buffer.byteLength(JSON.stringify(zeros.header)) + 16);
    assert.equal(decodeSegment(zeros.segment, keyring).data.length, 0);

    const { header } = encodeSegment(input(mixedSample()), key);
    assert.deepEqual(
      header.extents.filter((e) => e.offset >= 3 * MiB && e.offset < 4 * MiB),
      [
        { offset: 3 * MiB, length: 64 * KiB, kind: 'data' },
        { offset: 3 * MiB + 64 * KiB, length: 128 * KiB, kind: 'zero' },
        // The adjacent one-sector extent merges into the data run before it.
        { offset: 3 * MiB + 192 * KiB, length: 64 * KiB + 512, kind: 'data' },
      ],
    );
    assert.equal(header.dataLength, 128 * KiB + 256 * KiB + 128 * KiB + 512);
  });

  test('incompressible data is stored uncompressed', () => {
    const data = randomBytes(1 * MiB);
    const { header, stats } = encodeSegment(
      input({ extents: [{ offset: 0, length: data.length }], data }),
      key,
    );
    assert.equal(header.compression, 'none');
    assert.equal(stats.payloadBytes, data.length);
  });

  test('a segment mostly incompressible but partly text is still compressed', () => {
    // Three of the four probe samples land in random data: the text quarter must still be found.
    const data = Buffer.concat([randomBytes(3 * MiB), compressibleText(1 * MiB)]);
    const { header, stats } = encodeSegment(
      input({ extents: [{ offset: 0, length: data.length }], data }),
      key,
    );
    assert.equal(header.compression, 'zstd');
    assert.ok(stats.payloadBytes < 3.5 * MiB, `payload ${stats.payloadBytes}`);
  });

  test('every single-byte change in header or body is refused', () => {
    const { segment } = encodeSegment(input(mixedSample()), key);
    const headerEnd = 12 + segment.readUInt32BE(8);
    const positions = new Set<number>();
    for (let i = 0; i < headerEnd; i++) positions.add(i); // all of magic, length and header
    for (let i = headerEnd; i < segment.length; i += 997) positions.add(i); // body samples
    for (let i = segment.length - 48; i < segment.length; i++) positions.add(i); // body end and tag
    for (const position of positions) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const damaged = Buffer.from(segment);
        damaged[position] = damaged[position]! ^ mask;
        assertRejected(damaged, keyring);
      }
    }
    assert.ok(positions.size > headerEnd + 100);
  });

  test('every truncation is refused as truncated; extra bytes as trailing-data', () => {
    const { segment } = encodeSegment(input(mixedSample()), key);
    const headerEnd = 12 + segment.readUInt32BE(8);
    const cuts = new Set<number>([0, segment.length - 1, segment.length - 16]);
    for (let i = 0; i <= headerEnd + 1; i++) cuts.add(i);
    for (let i = headerEnd; i < segment.length; i += 4099) cuts.add(i);
    for (const cut of cuts) assertRejected(segment.subarray(0, cut), keyring, 'truncated');
    assertRejected(Buffer.concat([segment, Buffer.alloc(1)]), keyring, 'trailing-data');
  });

  test('a segment under another key is refused: unknown id, or same id with other key bytes', () => {
    const { segment } = encodeSegment(input(mixedSample()), key);
    assertRejected(segment, new Keyring([EncryptionKey.generate()]), 'unknown-key');
    assertRejected(segment, new Keyring(), 'unknown-key');

    // A header naming our key over a body sealed with other bytes: only the tag can catch it.
    const data = randomBytes(1024);
    const header = forgedHeader({ sha256: createHash('sha256').update(data).digest('hex'), keyId: key.id });
    assertRejected(seal(header, data, randomBytes(32)), keyring, 'auth-failed');
  });

  test('authentic segments with wrong content are refused: hash, length, decompression', () => {
    const data = randomBytes(1024);
    const sha256 = createHash('sha256').update(data).digest('hex');
    // The independent writer is right when the content is right, so the refusals below are meaningful.
    const good = seal(forgedHeader({ sha256, keyId: key.id }), data, keyBytes);
    assert.ok(decodeSegment(good, keyring).data.equals(data));

    const otherHash = createHash('sha256').update('other').digest('hex');
    assertRejected(
      seal(forgedHeader({ sha256: otherHash, keyId: key.id }), data, keyBytes),
      keyring,
      'hash-mismatch',
    );

    const text = compressibleText(1024);
    const compressed = Buffer.alloc(compressBound(text.length));
    const small = compressed.subarray(0, new CCtx().compress(compressed, text, 3));
    const zstdHeader = (dataLength: number): Record<string, unknown> =>
      forgedHeader({
        extents: [{ offset: 0, length: dataLength, kind: 'data' }],
        rawLength: dataLength,
        dataLength,
        sha256: createHash('sha256').update(text).digest('hex'),
        compression: 'zstd',
        payloadLength: small.length,
        keyId: key.id,
      });
    assert.ok(decodeSegment(seal(zstdHeader(1024), small, keyBytes), keyring).data.equals(text));
    assertRejected(seal(zstdHeader(2048), small, keyBytes), keyring, 'length-mismatch');
    assertRejected(seal(zstdHeader(512), small, keyBytes), keyring, 'decompress-failed');
  });

  test('malformed prefixes and headers are refused before decryption', () => {
    const { segment } = encodeSegment(input(mixedSample()), key);
    const wrongMagic = Buffer.from(segment);
    wrongMagic.write('NOTOSR!!', 0, 'latin1');
    assertRejected(wrongMagic, keyring, 'bad-magic');
    assertRejected(Buffer.from('XY'), keyring, 'bad-magic');
    const hugeHeader = Buffer.from(segment);
    hugeHeader.writeUInt32BE(0xffffffff, 8);
    assertRejected(hugeHeader, keyring, 'bad-header');
    const data = randomBytes(1024);
    const sha256 = createHash('sha256').update(data).digest('hex');
    assertRejected(
      seal(forgedHeader({ sha256, keyId: key.id, version: 2 }), data, keyBytes),
      keyring,
      'unsupported-version',
    );
    assertRejected(
      seal(forgedHeader({ sha256, keyId: key.id, extra: 1 }), data, keyBytes),
      keyring,
      'bad-header',
    );
    const misaligned = forgedHeader({
      sha256,
      keyId: key.id,
      extents: [{ offset: 100, length: 1024, kind: 'data' }],
    });
    assertRejected(seal(misaligned, data, keyBytes), keyring, 'bad-header');
  });

  test('encode refuses invalid input', () => {
    const data = Buffer.alloc(2048);
    const bad: Array<Partial<SegmentInput>> = [
      { extents: [{ offset: 100, length: 2048 }] },
      { extents: [{ offset: 0, length: 1000 }] },
      { extents: [{ offset: 0, length: 1024 }] }, // covers less than data
      { extents: [{ offset: 0, length: 4096 }] }, // covers more than data
      {
        extents: [
          { offset: 4096, length: 1024 },
          { offset: 0, length: 1024 },
        ],
      },
      {
        extents: [
          { offset: 0, length: 1536 },
          { offset: 1024, length: 512 },
        ],
      },
      { machine: 'a/b' },
      { cycle: -1 },
    ];
    for (const over of bad) {
      assert.throws(
        () => encodeSegment(input({ extents: [{ offset: 0, length: 2048 }], data }, over), key),
        RangeError,
      );
    }
    const tooBig = Buffer.alloc(MAX_SEGMENT_RAW_BYTES + 512);
    assert.throws(
      () => encodeSegment(input({ extents: [{ offset: 0, length: tooBig.length }], data: tooBig }), key),
      /more than 4194304 bytes/,
    );
  });

  test('blob names are deterministic, zero-padded and sort in apply order', () => {
    assert.equal(segmentBlobName('vm-01', 'disk0', 12, 3), segmentBlobName('vm-01', 'disk0', 12, 3));
    assert.equal(segmentBlobName('vm-01', 'disk0', 12, 3), 'vm-01/disk0/0000000000000012/0000000003.seg');
    assert.ok(segmentBlobName('vm-01', 'disk0', 12, 3).startsWith(segmentCyclePrefix('vm-01', 'disk0', 12)));
    const pairs: Array<[number, number]> = [
      [2, 10],
      [10, 0],
      [2, 9],
      [100, 1],
      [9, 123456],
      [Number.MAX_SAFE_INTEGER, 4294967295],
    ];
    const byNumber = [...pairs]
      .sort((a, b) => a[0] - b[0] || a[1] - b[1])
      .map(([c, i]) => segmentBlobName('m', 'd', c, i));
    const byName = pairs.map(([c, i]) => segmentBlobName('m', 'd', c, i)).sort();
    assert.deepEqual(byName, byNumber);
    assert.throws(() => segmentBlobName('m', 'd/e', 1, 1), RangeError);
    assert.throws(() => segmentBlobName('m', 'd', 1, 1e10), RangeError);
    assert.throws(() => segmentBlobName('m', 'd', 1.5, 1), RangeError);
  });
});
