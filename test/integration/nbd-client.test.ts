// The project's NBD client against a real qemu-storage-daemon: data written by qemu-io, holes,
// block status, pipelined reads, writes, and offsets past 4 GiB.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import { NbdClient, NBD_STATE_HOLE, NBD_STATE_ZERO } from '../../lib/qemu/nbd-client';
import { createQcow2, startStorageDaemon } from '../../lib/qemu/storage-daemon';
import type { StorageDaemon } from '../../lib/qemu/storage-daemon';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const SIZE = 6 * GiB; // sparse; big enough for offsets beyond 2^32
const FAR = 5 * GiB;
// Blocks with a distinct pattern each, for the pipelining test.
const PATTERN_BASE = 16 * MiB;
const PATTERN_BLOCK = 64 * KiB;
const PATTERN_COUNT = 48;

describe('NbdClient against qemu-storage-daemon', () => {
  let dir: string;
  let daemon: StorageDaemon;
  let client: NbdClient;

  before(async () => {
    dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'osr-nbd-'));
    const image = path.join(dir, 'disk0.qcow2');
    await createQcow2(image, SIZE);
    const cmds = ['write -P 0xab 0 1M', `write -P 0xcd ${FAR} 64k`];
    for (let i = 0; i < PATTERN_COUNT; i++) {
      cmds.push(`write -P ${i + 1} ${PATTERN_BASE + i * 2 * PATTERN_BLOCK} ${PATTERN_BLOCK}`);
    }
    await run('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), image]);
    daemon = await startStorageDaemon({ stateDir: path.join(dir, 'state'), images: [image] });
    client = await NbdClient.connect({
      socket: daemon.nbdSocket,
      exportName: 'disk0',
      metaContexts: ['base:allocation'],
    });
  });

  after(async () => {
    await client?.close();
    await daemon?.stop();
    if (dir) await fs.promises.rm(dir, { recursive: true, force: true });
  });

  it('negotiates size, block sizes and contexts', () => {
    assert.equal(client.size, SIZE);
    assert.equal(client.readOnly, false);
    assert.ok(client.structuredReplies);
    assert.equal(client.blockSize.maximum, 32 * MiB);
    assert.ok(client.metaContexts.has('base:allocation'));
  });

  it('reads what qemu-io wrote, including beyond 4 GiB', async () => {
    const head = await client.read(0, MiB);
    assert.ok(head.equals(Buffer.alloc(MiB, 0xab)));
    const far = await client.read(FAR, 64 * KiB);
    assert.ok(far.equals(Buffer.alloc(64 * KiB, 0xcd)));
  });

  it('reads holes as zeros, also next to data', async () => {
    const hole = await client.read(2 * MiB, 3 * MiB);
    assert.ok(hole.equals(Buffer.alloc(3 * MiB)));
    const edge = await client.read(MiB - 64 * KiB, 128 * KiB);
    assert.ok(edge.subarray(0, 64 * KiB).equals(Buffer.alloc(64 * KiB, 0xab)));
    assert.ok(edge.subarray(64 * KiB).equals(Buffer.alloc(64 * KiB)));
  });

  it('finds allocation with block status over the whole disk', async () => {
    const extents = await client.blockStatus(0, client.size, 'base:allocation');
    // Contiguous and covering exactly the asked range.
    let pos = 0;
    for (const e of extents) {
      assert.equal(e.offset, pos);
      pos += e.length;
    }
    assert.equal(pos, SIZE);
    const data = extents.filter((e) => (e.flags & (NBD_STATE_HOLE | NBD_STATE_ZERO)) === 0);
    assert.deepEqual(data[0], { offset: 0, length: MiB, flags: 0 });
    assert.deepEqual(data[data.length - 1], { offset: FAR, length: 64 * KiB, flags: 0 });
    assert.equal(data.length, 2 + PATTERN_COUNT);
    const gap = extents.find((e) => e.offset <= 2 * MiB && e.offset + e.length > 2 * MiB);
    assert.equal(gap?.flags, NBD_STATE_HOLE | NBD_STATE_ZERO);
  });

  it('answers a sub-range status query within the range', async () => {
    const extents = await client.blockStatus(MiB - 4 * KiB, 8 * KiB, 'base:allocation');
    assert.deepEqual(extents, [
      { offset: MiB - 4 * KiB, length: 4 * KiB, flags: 0 },
      { offset: MiB, length: 4 * KiB, flags: NBD_STATE_HOLE | NBD_STATE_ZERO },
    ]);
  });

  it('returns the right bytes to many pipelined reads', async () => {
    const reads = [];
    for (let round = 0; round < 4; round++) {
      for (let i = PATTERN_COUNT - 1; i >= 0; i--) {
        // Odd sizes and offsets inside each block, so replies of different lengths interleave.
        const inner = (i * 4099 + round * 517) % (PATTERN_BLOCK / 2);
        const len = PATTERN_BLOCK - inner - ((round * 13) % 100);
        const offset = PATTERN_BASE + i * 2 * PATTERN_BLOCK + inner;
        reads.push(client.read(offset, len).then((buf) => ({ i, len, buf })));
      }
    }
    const results = await Promise.all(reads);
    assert.equal(results.length, 4 * PATTERN_COUNT);
    for (const { i, len, buf } of results) {
      assert.equal(buf.length, len);
      assert.ok(buf.equals(Buffer.alloc(len, i + 1)), `block ${i} read back the wrong bytes`);
    }
  });

  it('splits a large read into chunks and reassembles it', async () => {
    const len = 2 * PATTERN_COUNT * PATTERN_BLOCK; // 6 MiB: more than one 4 MiB chunk
    const buf = await client.read(PATTERN_BASE, len);
    for (let i = 0; i < PATTERN_COUNT; i++) {
      const at = i * 2 * PATTERN_BLOCK;
      assert.ok(buf.subarray(at, at + PATTERN_BLOCK).equals(Buffer.alloc(PATTERN_BLOCK, i + 1)));
      assert.ok(buf.subarray(at + PATTERN_BLOCK, at + 2 * PATTERN_BLOCK).equals(Buffer.alloc(PATTERN_BLOCK)));
    }
  });

  it('writes across the 4 GiB boundary, flushes, and reads back on another connection', async () => {
    const data = randomBytes(9 * MiB + 123);
    const offset = 4 * GiB - 3 * MiB - 7;
    await client.write(offset, data);
    await client.flush();
    assert.ok((await client.read(offset, data.length)).equals(data));
    const other = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'disk0' });
    try {
      assert.ok((await other.read(offset, data.length)).equals(data));
    } finally {
      await other.close();
    }
  });

  it('rejects requests beyond the end and names the export in errors', async () => {
    await assert.rejects(client.read(SIZE - 10, 20), /NBD export "disk0" at unix:.*beyond the export size/);
    await assert.rejects(
      NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'nope' }),
      (err: Error) =>
        err.message.includes('"nope"') &&
        err.message.includes(daemon.nbdSocket) &&
        /no such export/.test(err.message),
    );
    await assert.rejects(
      NbdClient.connect({ socket: path.join(dir, 'missing.sock'), exportName: 'disk0' }),
      /missing\.sock.*no such socket/,
    );
    await assert.rejects(client.blockStatus(0, 4096, 'qemu:dirty-bitmap:x'), /was not negotiated/);
  });

  it('still works after the errors above', async () => {
    assert.ok((await client.read(0, 4096)).equals(Buffer.alloc(4096, 0xab)));
  });
});
