// BlockPipeline: the Piscina pool round trip, buffer moves, the memory bound and key handling.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, describe, test } from 'node:test';
import { serialize } from 'node:v8';
import { MessagePort } from 'node:worker_threads';
import { BlockPipeline } from '../../lib/segments/block-pipeline';
import type { EncodeJob } from '../../lib/segments/block-pipeline';
import { EncryptionKey, Keyring } from '../../lib/segments/keys';
import { SegmentVerificationError } from '../../lib/segments/segment-format';

const KiB = 1024;
const MiB = 1024 * KiB;

const keyBytes = randomBytes(32);
const key = EncryptionKey.fromBytes(keyBytes);

// Every message the main thread posts to a worker thread, serialised as it crosses, so a test can
// look for key material in task payloads. Worker startup data goes through the Worker
// constructor, not a MessagePort, and is where the key is meant to travel.
const posted: Buffer[] = [];
const originalPostMessage = MessagePort.prototype.postMessage;
MessagePort.prototype.postMessage = function (this: MessagePort, value: unknown, transferList?: never) {
  try {
    posted.push(serialize(value));
  } catch {
    posted.push(Buffer.from(String(value)));
  }
  return originalPostMessage.call(this, value, transferList);
};
after(() => {
  MessagePort.prototype.postMessage = originalPostMessage;
});

function text(length: number, seed: number): Buffer {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'block', 'write', 'cycle', '\n'];
  const out = Buffer.alloc(length);
  let state = seed;
  for (let at = 0; at < length; ) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    at += out.write(`${words[state >>> 29]!}${state % 1000} `, at);
  }
  return out;
}

function job(index: number, data: Buffer, offset = index * 8 * MiB): EncodeJob {
  return {
    machine: 'vm-7',
    diskId: 'scsi0',
    cycle: 42,
    index,
    extents: [{ offset, length: data.length }],
    data,
  };
}

let pipeline: BlockPipeline | undefined;
afterEach(async () => {
  await pipeline?.destroy();
  pipeline = undefined;
});

describe('BlockPipeline', () => {
  test('concurrent encodes round-trip through the pool, in any mix of data', async () => {
    pipeline = new BlockPipeline({ threads: 2, maxBytesInFlight: 16 * MiB, key });
    const inputs = Array.from({ length: 12 }, (_, i) => {
      const kind = i % 3;
      if (kind === 0) return randomBytes(1 * MiB + i * 512);
      if (kind === 1) return text(2 * MiB, i + 1);
      return Buffer.concat([Buffer.alloc(512 * KiB), randomBytes(64 * KiB), Buffer.alloc(64 * KiB)]);
    });
    const copies = inputs.map((b) => Buffer.from(b));
    const encoded = await Promise.all(inputs.map((data, i) => pipeline!.encode(job(i, data))));
    for (const data of inputs) assert.equal(data.length, 0, 'input moved to the worker, not copied');
    const segmentBytes = encoded.reduce((n, e) => n + e.segment.length, 0);

    const decoded = await Promise.all(encoded.map((e) => pipeline!.decode(e.segment)));
    decoded.forEach(({ header, data }, i) => {
      assert.equal(header.index, i);
      const original = copies[i]!;
      // Rebuild the extent from data and zero extents, and compare with what went in.
      const rebuilt = Buffer.alloc(original.length, 0xee);
      let at = 0;
      for (const extent of header.extents) {
        const start = extent.offset - i * 8 * MiB;
        if (extent.kind === 'zero') rebuilt.fill(0, start, start + extent.length);
        else at += data.copy(rebuilt, start, at, at + extent.length);
      }
      assert.equal(at, data.length);
      assert.ok(rebuilt.equals(original), `job ${i} round trip`);
    });
    assert.equal(encoded[2]!.stats.zeroBytes, 576 * KiB);
    assert.equal(encoded[1]!.header.compression, 'zstd');

    const stats = pipeline.stats();
    assert.equal(stats.encodeTasks, 12);
    assert.equal(stats.decodeTasks, 12);
    assert.equal(
      stats.rawBytesIn,
      copies.reduce((n, b) => n + b.length, 0),
    );
    assert.equal(stats.segmentBytesOut, segmentBytes);
    assert.equal(encoded[0]!.segment.length, 0, 'segments moved to the worker by decode');
    assert.ok(stats.compressionRatio > 1.5, `ratio ${stats.compressionRatio}`);
    assert.equal(stats.bytesInFlight, 0);
  });

  test('backpressure keeps bytes in the pool under maxBytesInFlight', async () => {
    const bound = 4 * MiB;
    pipeline = new BlockPipeline({ threads: 2, maxBytesInFlight: bound, key });
    const p = pipeline;
    let sampledMax = 0;
    let samples = 0;
    let sampling = true;
    // Sample the counter from the main thread while the pool works.
    const sample = (): void => {
      sampledMax = Math.max(sampledMax, p.bytesInFlight);
      samples++;
      if (sampling) setImmediate(sample);
    };
    sample();
    const jobs = Array.from({ length: 24 }, (_, i) => job(i, randomBytes(1 * MiB + 512 * (i % 3))));
    const results = await Promise.all(jobs.map((j) => p.encode(j)));
    sampling = false;
    const stats = p.stats();
    assert.equal(results.length, 24);
    assert.ok(stats.peakBytesInFlight <= bound, `peak ${stats.peakBytesInFlight} > ${bound}`);
    assert.ok(sampledMax <= bound, `sampled ${sampledMax} > ${bound}`);
    assert.ok(stats.peakBytesInFlight > 2 * MiB, 'several jobs really were in flight together');
    assert.ok(stats.backpressureWaits > 0, 'callers had to wait');
    assert.ok(samples > 1);
    assert.equal(p.bytesInFlight, 0);
    assert.equal(stats.waiting, 0);
  });

  test('a Buffer slicing a larger ArrayBuffer is copied, so its neighbours stay intact', async () => {
    pipeline = new BlockPipeline({ threads: 1, maxBytesInFlight: 4 * MiB, key });
    // Small Buffers share Node's pool; transferring one would detach the others.
    const first = Buffer.from(randomBytes(1024).toString('latin1'), 'latin1');
    const neighbour = Buffer.from(randomBytes(1024).toString('latin1'), 'latin1');
    assert.equal(first.buffer, neighbour.buffer, 'precondition: both live in one pool ArrayBuffer');
    const neighbourCopy = Buffer.from(neighbour);
    const firstCopy = Buffer.from(first);
    const { segment } = await pipeline.encode(job(0, first));
    assert.ok(neighbour.equals(neighbourCopy), 'neighbour intact');
    assert.ok(first.equals(firstCopy), 'the slice itself was copied, not detached');
    assert.ok((await pipeline.decode(segment)).data.equals(firstCopy));

    const big = randomBytes(2 * MiB);
    const bigCopy = Buffer.from(big);
    await pipeline.encode(job(1, big.subarray(1 * MiB)));
    assert.equal(big.length, 2 * MiB);
    assert.ok(big.equals(bigCopy), 'the larger buffer a job sliced is intact');
  });

  test('a buffer passed in once cannot be encoded again', async () => {
    pipeline = new BlockPipeline({ threads: 1, maxBytesInFlight: 4 * MiB, key });
    const data = randomBytes(64 * KiB);
    const extents = [{ offset: 0, length: 64 * KiB }];
    await pipeline.encode({ ...job(0, data), extents });
    await assert.rejects(pipeline.encode({ ...job(0, data), extents }), /must not be reused/);
    assert.equal(pipeline.stats().bytesInFlight, 0);
  });

  test('decode refuses damaged segments and segments under unknown keys, with the reason', async () => {
    pipeline = new BlockPipeline({ threads: 2, maxBytesInFlight: 8 * MiB, key });
    const { segment } = await pipeline.encode(job(0, text(256 * KiB, 9)));
    const damaged = Buffer.from(segment);
    damaged[damaged.length - 20] = damaged[damaged.length - 20]! ^ 0x10;
    await assert.rejects(pipeline.decode(damaged), (err: unknown) => {
      assert.ok(err instanceof SegmentVerificationError);
      assert.equal(err.reason, 'auth-failed');
      return true;
    });
    await assert.rejects(pipeline.decode(segment.subarray(0, 100)), { reason: 'truncated' });
    assert.equal(pipeline.stats().rejectedSegments, 2);
    await pipeline.destroy();

    // A decode-only pipeline (the applier's) with another key.
    pipeline = new BlockPipeline({
      threads: 1,
      maxBytesInFlight: 8 * MiB,
      keyring: new Keyring([EncryptionKey.generate()]),
    });
    await assert.rejects(pipeline.decode(Buffer.from(segment)), { reason: 'unknown-key' });
    await assert.rejects(pipeline.encode(job(0, randomBytes(512))), /no encryption key/);
    await pipeline.destroy();

    pipeline = new BlockPipeline({ threads: 1, maxBytesInFlight: 8 * MiB, keyring: new Keyring([key]) });
    assert.equal((await pipeline.decode(segment)).data.length, 256 * KiB);
  });

  test('key material never travels in task messages', async () => {
    posted.length = 0;
    pipeline = new BlockPipeline({ threads: 2, maxBytesInFlight: 8 * MiB, key });
    const encoded = await Promise.all([0, 1, 2].map((i) => pipeline!.encode(job(i, text(128 * KiB, i + 3)))));
    await Promise.all(encoded.map((e) => pipeline!.decode(e.segment)));
    assert.ok(posted.length >= 6, `saw ${posted.length} messages`);
    for (const message of posted) {
      assert.equal(message.indexOf(keyBytes), -1, 'raw key bytes in a task message');
      assert.equal(message.indexOf(Buffer.from(keyBytes.toString('base64'))), -1);
      assert.equal(message.indexOf(Buffer.from(keyBytes.toString('hex'))), -1);
    }
  });

  test('one pool per process; destroy rejects waiting calls and frees the slot', async () => {
    pipeline = new BlockPipeline({ threads: 1, maxBytesInFlight: 4 * MiB, key });
    assert.equal(BlockPipeline.current, pipeline);
    assert.throws(
      () => new BlockPipeline({ threads: 1, maxBytesInFlight: 4 * MiB, key }),
      /already runs in this process/,
    );
    const running = [0, 1, 2].map((i) => pipeline!.encode(job(i, randomBytes(3 * MiB))));
    const settled = Promise.allSettled(running);
    await pipeline.destroy();
    const outcomes = await settled;
    assert.ok(
      outcomes.some((o) => o.status === 'rejected'),
      'calls still queued are rejected',
    );
    assert.equal(BlockPipeline.current, undefined);
    await assert.rejects(pipeline.encode(job(0, randomBytes(512))), /destroyed/);
    assert.throws(
      () => new BlockPipeline({ threads: 1, maxBytesInFlight: 1 * MiB, key }),
      /at least 4194304/,
    );
    assert.throws(() => new BlockPipeline({ threads: 0, maxBytesInFlight: 4 * MiB, key }), /threads/);
  });
});
