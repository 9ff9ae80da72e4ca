// `osr export --format raw|qcow2|vhd` against a real Azurite: each format is recognized by
// qemu-img info as what it claims, of the right virtual size, and qemu-img compare finds it equal
// to the raw export; points taken on raw replicas (before VHDs) export the same way. The CLI's
// help names the formats and an unknown one is a usage error (exit 2) before anything is read.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { exportPointAs, type ExportFormat } from '../../activities/cloud-applier/export-formats';
import { parseVhdFooter } from '../../lib/disk/vhd';
import type { RecoveryPoint } from '../../shared/replication-types';
import {
  MiB,
  applyAndPublish,
  deps,
  firstImage,
  publishRawReplica,
  tmp,
  useApplierStorage,
} from '../helpers/applier-fixture';

useApplierStorage();
const run = promisify(execFile);
const cli = path.resolve(__dirname, '..', '..', 'cli', 'main.js');
const QEMU_FORMAT: Record<ExportFormat, string> = { raw: 'raw', qcow2: 'qcow2', vhd: 'vpc' };

function info(file: string, format: string): { format: string; 'virtual-size': number } {
  return JSON.parse(
    execFileSync('qemu-img', ['info', '--output', 'json', '-f', format, file]).toString(),
  ) as {
    format: string;
    'virtual-size': number;
  };
}

async function checkFormats(point: RecoveryPoint, image: Buffer, tag: string): Promise<void> {
  const files = {} as Record<ExportFormat, string>;
  for (const format of ['raw', 'qcow2', 'vhd'] as const) {
    const outFile = path.join(tmp, `${tag}.${format}`);
    const result = await exportPointAs(deps, { point, diskId: 'scsi0', outFile, format });
    files[format] = outFile;
    const seen = info(outFile, QEMU_FORMAT[format]);
    assert.equal(seen.format, QEMU_FORMAT[format], `${tag} ${format}: qemu-img recognizes it`);
    const virtual = format === 'vhd' ? Math.ceil(image.length / MiB) * MiB : image.length;
    assert.equal(seen['virtual-size'], virtual, `${tag} ${format}: virtual size`);
    assert.equal(result.virtualBytes, virtual);
    assert.equal(result.format, format);
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.includes('osr-export')),
      [],
      'no temporary file is left',
    );
  }
  assert.ok(fs.readFileSync(files.raw).equals(image), `${tag}: the raw export is the disk`);
  for (const format of ['qcow2', 'vhd'] as const) {
    execFileSync('qemu-img', [
      'compare',
      '-q',
      '-f',
      QEMU_FORMAT[format],
      '-F',
      'raw',
      files[format],
      files.raw,
    ]);
  }
  const vhd = fs.readFileSync(files.vhd);
  const footer = parseVhdFooter(vhd.subarray(vhd.length - 512));
  assert.equal(footer?.diskType, 2, 'a fixed VHD');
  assert.equal(vhd.length, footer.currentSize + 512);
}

describe('osr export --format', () => {
  test('raw, qcow2 and vhd exports of a point are what qemu-img says and equal to the raw export', async () => {
    const machine = 'vm-exp';
    const { image, extents } = firstImage();
    const point = await applyAndPublish(machine, 1, 'e1', image, extents);
    await checkFormats(point, image, 'vhd-replica');
  });

  test('a point of a raw replica (taken before replicas were VHDs) exports in every format', async () => {
    const machine = 'vm-exp-old';
    const image = randomBytes(3 * MiB + 512);
    const { point } = await publishRawReplica(machine, 'e2', image);
    await checkFormats(point, image, 'raw-replica');
  });

  test('the CLI names the formats and refuses another one as a usage error', async () => {
    const help = await run(process.execPath, [cli, 'export', '--help']);
    assert.match(help.stdout, /--format <format>/);
    assert.match(help.stdout, /"raw", "qcow2", "vhd"/);
    assert.match(help.stdout, /default: "raw"/);
    const out = path.join(tmp, 'bad.img');
    const bad = await run(process.execPath, [
      cli,
      'export',
      'vm',
      '--point',
      'latest',
      '--out',
      out,
      '--format',
      'vmdk',
    ]).then(
      () => assert.fail('accepted --format vmdk'),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /vmdk/);
    assert.ok(!fs.existsSync(out));
  });
});
