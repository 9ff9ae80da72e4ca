// Compressed data frames between the agent and its process server (agent/frame-codec.ts): they
// come back byte for byte, random parts go stored, old raw frames are still read beside them, a
// broken layout is refused before its bytes are read, and the agent's reads keep a fixed number of
// buffers however many are asked at once, and write their frames a slice at a time.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import zlib from 'node:zlib';
import { socketWriter, WRITE_SLICE_BYTES } from '../../agent/connection';
import { checkLayout, CODECS, compressFrame, PART_BYTES, sampledEntropy } from '../../agent/frame-codec';
import { dataPieces, DATA_CHUNK_BYTES, encode, encodeData, frameReader } from '../../agent/protocol';
import { ReadSlots } from '../../agent/read-slots';
import { trackingHandler } from '../../agent/tracking-requests';
import type { Tracker } from '../../agent/tracking/tracker';

const text = (n: number): Buffer => Buffer.alloc(n, 'a line of ordinary, compressible text. ');

/** zeros, random, text, half random half text, and a short last part. */
function mixed(): Buffer {
  const half = Buffer.concat([crypto.randomBytes(PART_BYTES / 2), text(PART_BYTES / 2)]);
  return Buffer.concat([
    Buffer.alloc(PART_BYTES),
    crypto.randomBytes(PART_BYTES),
    text(PART_BYTES),
    half,
    text(1000),
  ]);
}

const wire = (pieces: Array<string | Buffer>): Buffer =>
  Buffer.concat(pieces.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));

function readAll(stream: Buffer, step: number): unknown[] {
  const seen: unknown[] = [];
  const feed = frameReader(
    (v) => seen.push(v),
    (id, data) => seen.push({ id, data }),
  );
  for (let at = 0; at < stream.length; at += step) feed(stream.subarray(at, at + step));
  return seen;
}

for (const codec of CODECS)
  test(`a ${codec} frame comes back byte for byte; random parts go stored, the rest shrinks`, () => {
    const data = mixed();
    const { layout, bytes } = compressFrame(Buffer.from(data), codec);
    assert.equal(layout.codec, codec);
    assert.equal(layout.raw, data.length);
    assert.equal(layout.parts.length, 5);
    assert.equal(layout.parts[1], PART_BYTES, 'the random part is sent as it is');
    assert.ok((layout.parts[0] as number) < 1024, 'zeros shrink to almost nothing');
    assert.ok((layout.parts[2] as number) < PART_BYTES / 20, 'text shrinks');
    assert.ok((layout.parts[3] as number) < PART_BYTES * 0.6, 'half text shrinks by about half');
    assert.ok(bytes < data.length * 0.45, `${bytes} wire bytes for ${data.length}`);
    assert.ok(sampledEntropy(crypto.randomBytes(PART_BYTES)) > 7.5);
    assert.ok(sampledEntropy(text(PART_BYTES)) < 5);

    // In place: the frame's bytes are the start of the caller's buffer, nothing else is held.
    const slot = Buffer.from(data);
    const pieces = dataPieces(7, slot, codec);
    assert.equal(pieces.length, 2);
    assert.equal((pieces[1] as Buffer).buffer, slot.buffer);
    assert.equal((pieces[1] as Buffer).byteOffset, slot.byteOffset);
    const stream = wire(pieces);
    for (const step of [1, 999, 65_536, stream.length])
      assert.deepEqual(readAll(stream, step), [{ id: 7, data }], `split every ${step} bytes`);
  });

test('old raw frames are still read, between compressed ones and lines', () => {
  const data = mixed();
  const stream = Buffer.concat([
    encodeData(1, data), // an older agent's frame: no codec on its line
    wire(dataPieces(2, Buffer.from(data), 'brotli')), // compressed in place: a copy
    Buffer.from(encode({ type: 'heartbeat', seq: 3 })),
    wire(dataPieces(4, data)), // asked without a codec (an older process server): raw
    wire(dataPieces(5, Buffer.alloc(0), 'deflate')),
  ]);
  assert.deepEqual(readAll(stream, 4096), [
    { id: 1, data },
    { id: 2, data },
    { type: 'heartbeat', seq: 3 },
    { id: 4, data },
    { id: 5, data: Buffer.alloc(0) },
  ]);
  const [line] = dataPieces(4, data);
  assert.deepEqual(JSON.parse(line as string), { type: 'data', id: 4, length: data.length });
});

test('a compressed frame whose layout does not add up is refused before its bytes', () => {
  const max = DATA_CHUNK_BYTES;
  const cases: Array<[unknown, number, RegExp]> = [
    [
      { codec: 'zstd', raw: 10, parts: [10] },
      10,
      /codec "zstd", which this side does not read \(brotli, deflate\)/,
    ],
    [{ codec: 'deflate', raw: max + 1, parts: [] }, 10, /raw bytes \(at most 4194304\)/],
    [{ codec: 'deflate', raw: PART_BYTES + 1, parts: [5] }, 5, /needs 2 parts/],
    [
      { codec: 'deflate', raw: 100, parts: [101] },
      101,
      /part 0 of a compressed frame is 101 bytes \(1 to 100\)/,
    ],
    [{ codec: 'deflate', raw: 100, parts: [0] }, 0, /part 0 .* is 0 bytes/],
    [{ codec: 'deflate', raw: 100, parts: [50] }, 60, /parts add up to 50, not its 60 bytes/],
  ];
  for (const [layout, length, message] of cases)
    assert.throws(() => checkLayout(layout, length, max), message);
  // Through the reader: the header line alone is refused.
  const feed = frameReader(
    () => undefined,
    () => undefined,
  );
  assert.throws(
    () =>
      feed(Buffer.from(encode({ type: 'data', id: 1, length: 5, codec: 'deflate', raw: 100, parts: [6] }))),
    /parts add up to 6, not its 5 bytes/,
  );
});

test('a part that does not decompress to exactly its slice is refused', () => {
  const packers = {
    deflate: (b: Buffer) => zlib.deflateRawSync(b),
    brotli: (b: Buffer) => zlib.brotliCompressSync(b),
  };
  for (const codec of CODECS) {
    const frame = (part: Buffer, raw: number): Buffer =>
      Buffer.concat([
        Buffer.from(encode({ type: 'data', id: 1, length: part.length, codec, raw, parts: [part.length] })),
        part,
      ]);
    const read = (bytes: Buffer): unknown[] => readAll(bytes, bytes.length);
    const pack = packers[codec];
    assert.throws(
      () => read(frame(Buffer.from('not compressed at all'), 1000)),
      /part 0 .* does not decompress/,
    );
    // Too much (a bomb): stopped at the slice's length. Too little: named.
    assert.throws(() => read(frame(pack(Buffer.alloc(2000)), 1000)), /does not decompress/, codec);
    assert.throws(
      () => read(frame(pack(Buffer.alloc(500)), 1000)),
      /decompresses to 500 bytes, not 1000/,
      codec,
    );
  }
});

test('the agent serves many reads at once with two buffers, compressed only when asked', async () => {
  const disk = Buffer.concat(Array.from({ length: 16 }, () => mixed()));
  const made: Buffer[] = [];
  let reading = 0;
  let most = 0;
  const tracker = {
    async readInto(target: Buffer, _pit: string, _disk: string, offset: number, length: number) {
      if (!made.includes(target)) made.push(target);
      most = Math.max(most, ++reading);
      await new Promise((r) => setImmediate(r));
      disk.copy(target, 0, offset, offset + length);
      reading--;
      return target.subarray(0, length);
    },
  } as unknown as Tracker;
  const slots = new ReadSlots(2, 1024 * 1024);
  const handle = trackingHandler(tracker, { slots });
  const sent: Buffer[] = [];
  let unwritten = 0;
  let queued = 0;
  // A slow socket: each write is taken a little later, as a link slower than the disk would.
  const write = (...pieces: Array<string | Buffer>): Promise<void> => {
    const bytes = wire(pieces);
    queued = Math.max(queued, ++unwritten);
    return new Promise((resolve) =>
      setTimeout(() => {
        sent.push(bytes);
        unwritten--;
        resolve();
      }, 2),
    );
  };
  const reads = 40;
  const chunk = Math.floor(disk.length / reads);
  for (let i = 0; i < reads; i++)
    handle(
      i + 1,
      {
        op: 'read',
        pitId: 'p',
        disk: 'vdb',
        offset: i * chunk,
        length: chunk,
        ...(i % 2 ? { codec: 'brotli' } : {}),
      },
      write,
    );
  while (sent.length < reads) await new Promise((r) => setTimeout(r, 5));
  assert.equal(slots.allocated, 2, 'two buffers, reused');
  assert.ok(
    made.length <= 2 && most <= 2 && queued <= 2,
    `buffers ${made.length}, reads ${most}, queued ${queued}`,
  );
  const got = new Map<number, Buffer>();
  for (const f of readAll(Buffer.concat(sent), 8192) as Array<{ id: number; data: Buffer }>)
    got.set(f.id, f.data);
  for (let i = 0; i < reads; i++)
    assert.ok(
      got.get(i + 1)?.equals(disk.subarray(i * chunk, (i + 1) * chunk)),
      `read ${i + 1} byte for byte`,
    );
  const compressedLines = Buffer.concat(sent)
    .toString('latin1')
    .match(/\{"type":"data","id":\d+,"length":\d+,"codec":"brotli"/g)?.length;
  assert.equal(compressedLines, reads / 2, 'only the reads that asked for brotli came compressed');
});

test('the socket writer sends one call after another, a slice at a time, and stops at a close', async () => {
  const taken: Array<string | Buffer> = [];
  let pending = 0;
  let most = 0;
  const socket = Object.assign(new EventEmitter(), {
    destroyed: false,
    write(piece: string | Buffer, done: () => void) {
      taken.push(piece);
      most = Math.max(most, ++pending);
      setTimeout(() => (pending--, done()), 1);
      return true;
    },
  });
  const write = socketWriter(socket as unknown as TLSSocket);
  const frame = crypto.randomBytes(WRITE_SLICE_BYTES * 2 + 5);
  await Promise.all([write('header\n', frame), write('line\n')]);
  assert.deepEqual(
    taken.map((p) => (typeof p === 'string' ? p : p.length)),
    ['header\n', WRITE_SLICE_BYTES, WRITE_SLICE_BYTES, 5, 'line\n'],
  );
  assert.ok(Buffer.concat(taken.slice(1, 4) as Buffer[]).equals(frame), 'slices of the frame, in order');
  assert.equal(most, 1, 'the socket holds one slice at a time');
  // A close while a slice waits: every write still pending resolves, nothing more is taken.
  socket.write = (piece: string | Buffer) => (taken.push(piece), true);
  const stuck = write(frame);
  while (taken.length < 6) await new Promise((r) => setImmediate(r));
  socket.destroyed = true;
  socket.emit('close');
  await stuck;
  await write('after\n');
  assert.equal(taken.length, 6);
});
