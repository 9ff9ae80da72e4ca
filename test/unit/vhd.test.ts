// The fixed VHD footer (lib/disk/vhd.ts): fields, CHS geometry, checksum, and a known vector from
// qemu-img (`qemu-img create -f vpc -o subformat=fixed`), whose footer is compared field by field;
// images built with our footer are read by qemu-img as fixed VHDs of the right size.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  DISK_TYPE_FIXED,
  MAX_PAGE_BLOB_BYTES,
  MAX_VHD_VIRTUAL_BYTES,
  VHD_FOOTER_BYTES,
  buildVhdFooter,
  chsGeometry,
  fixedVhdFooterOf,
  footerChecksum,
  footerDate,
  parseVhdFooter,
  vhdBlobBytes,
  vhdVirtualBytes,
} from '../../lib/disk/vhd';

const MiB = 1024 * 1024;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-vhd-'));
const hasQemuImg = (() => {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('sizes: virtual size is the disk rounded up to a MiB, the blob one footer more, at most 8 TiB', () => {
  assert.equal(vhdVirtualBytes(1), MiB);
  assert.equal(vhdVirtualBytes(1000), MiB);
  assert.equal(vhdVirtualBytes(MiB), MiB);
  assert.equal(vhdVirtualBytes(6 * MiB + 1536), 7 * MiB);
  assert.equal(vhdBlobBytes(6 * MiB + 1536), 7 * MiB + 512);
  assert.equal(MAX_VHD_VIRTUAL_BYTES, 8 * 1024 * 1024 * MiB - MiB);
  assert.ok(MAX_VHD_VIRTUAL_BYTES + VHD_FOOTER_BYTES <= MAX_PAGE_BLOB_BYTES);
  assert.ok(vhdBlobBytes(MAX_VHD_VIRTUAL_BYTES + 1) > MAX_PAGE_BLOB_BYTES);
  assert.throws(() => vhdVirtualBytes(0), RangeError);
});

test('the footer holds the fields of a fixed VHD and checks itself', () => {
  const created = new Date('2026-12-05T12:00:00Z');
  const uniqueId = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
  const footer = buildVhdFooter({ virtualBytes: 7 * MiB, uniqueId, created });
  assert.equal(footer.length, 512);
  assert.equal(footer.toString('latin1', 0, 8), 'conectix');
  const f = parseVhdFooter(footer);
  assert.ok(f);
  assert.equal(f.features, 2);
  assert.equal(f.version, 0x00010000);
  assert.equal(f.dataOffset, 0xffffffffffffffffn);
  assert.equal(f.timestamp, Math.floor(created.getTime() / 1000) - 946684800);
  assert.equal(footerDate(f).toISOString(), created.toISOString());
  assert.equal(f.creatorApp, 'win ');
  assert.equal(f.originalSize, 7 * MiB);
  assert.equal(f.currentSize, 7 * MiB);
  assert.deepEqual(f.geometry, chsGeometry(7 * MiB));
  assert.equal(f.diskType, DISK_TYPE_FIXED);
  assert.equal(f.uniqueId, uniqueId);
  assert.equal(f.savedState, 0);
  assert.ok(footer.subarray(85).equals(Buffer.alloc(427)), 'reserved bytes are zero');
  assert.equal(f.checksum, footerChecksum(footer));

  // Any changed byte breaks the checksum.
  for (const at of [0, 20, 48, 70, 300, 511]) {
    const bad = Buffer.from(footer);
    bad[at] = bad[at]! ^ 0x01;
    assert.equal(parseVhdFooter(bad), undefined, `byte ${at} changed`);
  }
  // A footer for another length, or not fixed, is not this blob's footer.
  assert.ok(fixedVhdFooterOf(footer, 7 * MiB + 512));
  assert.equal(fixedVhdFooterOf(footer, 8 * MiB + 512), undefined);
  assert.equal(fixedVhdFooterOf(Buffer.alloc(512), 7 * MiB + 512), undefined);
  // A new id each time unless one is given.
  assert.notEqual(
    parseVhdFooter(buildVhdFooter({ virtualBytes: MiB }))?.uniqueId,
    parseVhdFooter(buildVhdFooter({ virtualBytes: MiB }))?.uniqueId,
  );
  assert.throws(() => buildVhdFooter({ virtualBytes: 1000 }), RangeError);
  assert.throws(() => buildVhdFooter({ virtualBytes: MiB, uniqueId: 'nope' }), RangeError);
});

test('CHS geometry follows the specification', () => {
  // 10514432 bytes is what qemu-img makes of 10M (a whole number of cylinders): 302/4/17.
  assert.deepEqual(chsGeometry(10514432), { cylinders: 302, heads: 4, sectorsPerTrack: 17 });
  // Over 65535*16*63 sectors (about 31.5 GiB): 255 sectors per track, 16 heads.
  assert.deepEqual(chsGeometry(64 * 1024 * MiB), { cylinders: 32896, heads: 16, sectorsPerTrack: 255 });
  // The cap: 65535*16*255 sectors (about 127 GiB) and more.
  const max = { cylinders: 65535, heads: 16, sectorsPerTrack: 255 };
  assert.deepEqual(chsGeometry(65535 * 16 * 255 * 512), max);
  assert.deepEqual(chsGeometry(MAX_VHD_VIRTUAL_BYTES), max);
  // Between: 31 and 63 sectors per track.
  assert.equal(chsGeometry(200 * MiB).sectorsPerTrack, 31);
  assert.equal(chsGeometry(1024 * MiB).sectorsPerTrack, 63);
});

test(
  'known vector: our footer equals qemu-img’s fixed VPC footer in every format field',
  { skip: !hasQemuImg },
  () => {
    for (const size of [10514432, 1073479680]) {
      const file = path.join(tmp, `qemu-${size}.vhd`);
      execFileSync('qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', file, String(size)]);
      const fd = fs.openSync(file, 'r');
      const length = fs.fstatSync(fd).size;
      const theirs = Buffer.alloc(512);
      fs.readSync(fd, theirs, 0, 512, length - 512);
      fs.closeSync(fd);
      fs.rmSync(file);
      const q = fixedVhdFooterOf(theirs, length);
      assert.ok(q, 'qemu-img’s footer parses (cookie, checksum, fixed, size)');
      const ours = parseVhdFooter(buildVhdFooter({ virtualBytes: q.currentSize }));
      assert.ok(ours);
      for (const field of [
        'features',
        'version',
        'dataOffset',
        'originalSize',
        'currentSize',
        'geometry',
        'diskType',
        'savedState',
      ] as const) {
        assert.deepEqual(ours[field], q[field], `${field} for ${size}`);
      }
    }
  },
);

test(
  'qemu-img reads an image with our footer as a fixed VHD of its virtual size',
  { skip: !hasQemuImg },
  () => {
    for (const virtualBytes of [MiB, 7 * MiB, 10 * MiB]) {
      const data = Buffer.alloc(virtualBytes);
      for (let at = 0; at < virtualBytes; at += 4096) data.writeUInt32BE(at, at);
      const raw = path.join(tmp, `data-${virtualBytes}.raw`);
      const vhd = path.join(tmp, `data-${virtualBytes}.vhd`);
      fs.writeFileSync(raw, data);
      fs.writeFileSync(vhd, Buffer.concat([data, buildVhdFooter({ virtualBytes })]));
      const info = JSON.parse(
        execFileSync('qemu-img', ['info', '--output', 'json', '-f', 'vpc', vhd]).toString(),
      ) as { format: string; 'virtual-size': number };
      assert.equal(info.format, 'vpc');
      assert.equal(info['virtual-size'], virtualBytes);
      // Equal contents: qemu reads the data where a fixed VHD has it (a dynamic one would need a BAT).
      execFileSync('qemu-img', ['compare', '-q', '-f', 'vpc', '-F', 'raw', vhd, raw]);
    }
  },
);
