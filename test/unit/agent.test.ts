// The agent's pure parts: what it reads from /sys and /etc (on a made-up tree), the wire's line
// and frame readers and fingerprint spellings.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { blockDevices, machineFacts } from '../../agent/inventory';
import {
  DATA_CHUNK_BYTES,
  encode,
  encodeData,
  frameReader,
  lineReader,
  MAX_LINE_BYTES,
  normalizeFingerprint,
} from '../../agent/protocol';

function tree(files: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-agent-unit-'));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), text);
  }
  return root;
}

test('disks come from /sys/block in bytes; loop, RAM, CD and device-mapper devices are not disks', () => {
  const root = tree({
    'sys/block/vda/size': '131072\n',
    'sys/block/vda/ro': '0\n',
    'sys/block/vda/serial': 'disk0\n',
    'sys/block/sdb/size': '2048\n',
    'sys/block/sdb/ro': '1\n',
    'sys/block/sdb/device/model': 'QEMU HARDDISK\n',
    'sys/block/loop0/size': '100\n',
    'sys/block/dm-0/size': '100\n',
    'sys/block/sr0/size': '100\n',
    'sys/block/vdc/size': '0\n',
  });
  assert.deepEqual(blockDevices(root), [
    { name: 'sdb', sizeBytes: 2048 * 512, readOnly: true, model: 'QEMU HARDDISK' },
    { name: 'vda', sizeBytes: 64 * 1024 * 1024, readOnly: false, serial: 'disk0' },
  ]);
  fs.rmSync(root, { recursive: true });
});

test('the machine is named by /etc/machine-id; a missing one is refused with how to make it', () => {
  const root = tree({
    'etc/machine-id': '0123456789ABCDEF0123456789abcdef\n',
    'etc/os-release': 'NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
  });
  const facts = machineFacts(root);
  assert.equal(facts.machineId, '0123456789abcdef0123456789abcdef');
  assert.equal(facts.os, 'Debian GNU/Linux 12 (bookworm)');
  assert.deepEqual(facts.disks, []);
  fs.rmSync(path.join(root, 'etc/machine-id'));
  assert.throws(() => machineFacts(root), /machine-id is missing .*systemd-machine-id-setup/);
  fs.rmSync(root, { recursive: true });
});

test('the line reader joins split chunks and refuses an endless line', () => {
  const seen: unknown[] = [];
  const feed = lineReader((v) => seen.push(v));
  feed(Buffer.from('{"type":"heart'));
  feed(Buffer.from('beat","seq":1}\n{"type":"heartbeat","seq":2}\n'));
  assert.deepEqual(seen, [
    { type: 'heartbeat', seq: 1 },
    { type: 'heartbeat', seq: 2 },
  ]);
  assert.throws(() => feed(Buffer.alloc(MAX_LINE_BYTES + 1, 'a')), /a line over/);
});

test('a fingerprint is taken in the usual spellings and refused when it is not SHA-256', () => {
  const hex = 'ab'.repeat(32);
  const colons = hex.toUpperCase().match(/../g)?.join(':');
  assert.equal(normalizeFingerprint(`sha256=${hex}`), colons);
  assert.equal(normalizeFingerprint(colons as string), colons);
  assert.throws(() => normalizeFingerprint('SHA1:ab:cd'), /not a SHA-256 certificate fingerprint/);
});

test('the frame reader gives data frames whole, in order with lines, however the bytes are split', () => {
  const bytes = Buffer.alloc(300_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) % 256;
  // Raw bytes that hold newlines and what looks like JSON must not be read as lines.
  bytes.write('\n{"type":"reply","id":9}\n', 1000);
  const stream = Buffer.concat([
    Buffer.from(encode({ type: 'reply', id: 1, result: { ok: true } })),
    encodeData(2, bytes),
    encodeData(3, Buffer.alloc(0)),
    Buffer.from(encode({ type: 'heartbeat', seq: 4 })),
  ]);
  for (const step of [1, 7, 4096, stream.length]) {
    const seen: unknown[] = [];
    const feed = frameReader(
      (v) => seen.push(v),
      (id, data) => seen.push({ id, data }),
    );
    for (let at = 0; at < stream.length; at += step) feed(stream.subarray(at, at + step));
    assert.deepEqual(seen, [
      { type: 'reply', id: 1, result: { ok: true } },
      { id: 2, data: bytes },
      { id: 3, data: Buffer.alloc(0) },
      { type: 'heartbeat', seq: 4 },
    ]);
  }
  const feed = frameReader(
    () => undefined,
    () => undefined,
  );
  assert.throws(
    () => feed(Buffer.from(encode({ type: 'data', id: 1, length: DATA_CHUNK_BYTES + 1 }))),
    /a data frame of \d+ bytes \(at most 4194304\)/,
  );
});
