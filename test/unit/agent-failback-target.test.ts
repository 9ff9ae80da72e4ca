// The agent's side of failback into its machine (agent/failback-target.ts), on files standing in
// for block devices: what the master target writes is what it reads back, zeros and checksums
// are the disk's, and a disk the agent tracks, one open elsewhere, an unknown one or a range
// outside the disk are refused with what to do, before any byte is written. The real devices,
// O_EXCL against a mount and the whole failback are in test/integration/agent-recovery.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FailbackTarget } from '../../agent/failback-target';
import { frameReader, TARGET_WRITE_BYTES, type TargetRequest } from '../../agent/protocol';
import { blockChecksums } from '../../agent/tracking/checksums';

const KiB = 1024;
const SIZE = 1024 * KiB;
let dir: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-failback-target-'));
  for (const disk of ['xda', 'xdb']) {
    fs.mkdirSync(path.join(dir, 'sys', disk), { recursive: true });
    fs.writeFileSync(path.join(dir, 'sys', disk, 'size'), `${SIZE / 512}\n`);
    fs.writeFileSync(path.join(dir, disk), randomBytes(SIZE));
  }
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Serves one request; its reply (result or error) or data frame, as the process server reads it. */
async function ask(
  target: FailbackTarget,
  request: TargetRequest,
): Promise<{ result?: unknown; error?: { name: string; message: string }; data?: Buffer }> {
  const answer: { result?: unknown; error?: { name: string; message: string }; data?: Buffer } = {};
  const feed = frameReader(
    (line) => Object.assign(answer, line as object),
    (_id, data) => (answer.data = data),
  );
  await target
    .serve(1, request, async (...pieces) => {
      for (const p of pieces) feed(Buffer.isBuffer(p) ? p : Buffer.from(p));
    })
    .catch((err: Error) => (answer.error = { name: err.name, message: err.message }));
  return answer;
}

function agentTarget(tracked: string[] = [], busy: string[] = []): FailbackTarget {
  return new FailbackTarget({
    tracks: (disk) => tracked.includes(disk),
    devDir: dir,
    sysBlock: path.join(dir, 'sys'),
    openExclusive: async (file) => {
      if (busy.includes(path.basename(file)))
        throw Object.assign(new Error('EBUSY: resource busy'), { code: 'EBUSY' });
      return fs.promises.open(file, 'r+');
    },
  });
}

test('writes land where the master target put them; reads, zeros and checksums are the disk', async () => {
  const target = agentTarget();
  const opened = await ask(target, { op: 'target-open', disks: ['xda'] });
  assert.deepEqual(opened.result, { disks: [{ disk: 'xda', sizeBytes: SIZE }] });
  const data = randomBytes(TARGET_WRITE_BYTES);
  const w = await ask(target, {
    op: 'target-write',
    disk: 'xda',
    offset: 64 * KiB,
    data: data.toString('base64'),
  });
  assert.deepEqual(w.result, { written: data.length });
  assert.deepEqual(
    (await ask(target, { op: 'target-zero', disk: 'xda', offset: 512 * KiB, length: 100 * KiB })).result,
    {
      zeroed: 100 * KiB,
    },
  );
  assert.deepEqual((await ask(target, { op: 'target-flush', disk: 'xda' })).result, {});
  const onDisk = fs.readFileSync(path.join(dir, 'xda'));
  assert.ok(onDisk.subarray(64 * KiB, 64 * KiB + data.length).equals(data), 'the write is on the disk');
  assert.ok(onDisk.subarray(512 * KiB, 612 * KiB).equals(Buffer.alloc(100 * KiB)), 'the zeros are');
  const read = await ask(target, { op: 'target-read', disk: 'xda', offset: 0, length: SIZE });
  assert.ok(read.data?.equals(onDisk), 'a read is the disk');
  const sums = await ask(target, {
    op: 'target-checksums',
    disk: 'xda',
    offset: 0,
    length: SIZE,
    blockBytes: 64 * KiB,
  });
  assert.ok(sums.data?.equals(blockChecksums(onDisk, 64 * KiB)), 'checksums in the replica-checksum format');
  assert.deepEqual((await ask(target, { op: 'target-close' })).result, { closed: 1 });
});

test('a tracked disk, one held elsewhere, an unknown one and a range outside are refused, nothing written', async () => {
  const before = fs.readFileSync(path.join(dir, 'xdb'));
  const target = agentTarget(['xda'], ['xdb']);
  const tracked = await ask(target, { op: 'target-open', disks: ['xda'] });
  assert.equal(tracked.error?.name, 'DiskInUseError');
  assert.match(
    tracked.error?.message ?? '',
    /xda is still tracked by the agent .*osr agent resume.*unmount it/,
  );
  const busy = await ask(target, { op: 'target-write', disk: 'xdb', offset: 0, data: 'AAAA' });
  assert.equal(busy.error?.name, 'DiskInUseError');
  assert.match(
    busy.error?.message ?? '',
    /xdb is open exclusively by something else .* stop it and try again/,
  );
  // All or none: xdb refused, the xda opened before it in the same request is let go.
  const partly = agentTarget([], ['xdb']);
  assert.equal(
    (await ask(partly, { op: 'target-open', disks: ['xda', 'xdb'] })).error?.name,
    'DiskInUseError',
  );
  assert.equal(await partly.close(), 0, 'no disk stays claimed');
  const unknown = await ask(target, { op: 'target-open', disks: ['../etc'] });
  assert.match(unknown.error?.message ?? '', /this machine has no disk "\.\.\/etc"/);

  const free = agentTarget();
  const outside = await ask(free, { op: 'target-write', disk: 'xdb', offset: SIZE - 2, data: 'AAAA' });
  assert.match(outside.error?.message ?? '', /xdb: 1048574\+3 is outside its 1048576 bytes/);
  const big = Buffer.alloc(TARGET_WRITE_BYTES + 512).toString('base64');
  const tooBig = await ask(free, { op: 'target-write', disk: 'xdb', offset: 0, data: big });
  assert.match(tooBig.error?.message ?? '', /at most 131072 bytes at once/);
  await free.close();
  assert.ok(fs.readFileSync(path.join(dir, 'xdb')).equals(before), 'xdb is as it was');
});
