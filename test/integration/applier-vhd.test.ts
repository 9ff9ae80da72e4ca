// Replicas, points and recovered disks are fixed VHDs Azure can import (issue #15), against a real
// Azurite: what the blob service hands back is read by qemu-img as a fixed VHD (format vpc) of the
// disk's size rounded up to a MiB and equal to the point's raw export, before and after the disk
// grows; replicas made before VHDs are converted in place without touching their data, an
// interrupted conversion or grow is finished by the next call, and old raw points stay readable.
// Azure's own import (`az disk create --source`) was not run here: the footer is checked with
// qemu-img and by our parser.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import type { PageBlobClient } from '@azure/storage-blob';
import { exportPoint } from '../../activities/cloud-applier/export-point';
import { createRecoveredDisks, failoverBlobClient } from '../../activities/cloud-applier/recovered-disks';
import { replicaChecksums } from '../../activities/cloud-applier/replica-checksums';
import {
  DISK_TOO_LARGE,
  ensureReplicaDisk,
  replicaBlobClient,
} from '../../activities/cloud-applier/replica-disk';
import { DATA_BYTES_METADATA_KEY } from '../../lib/azure/vhd-blob';
import { MAX_VHD_VIRTUAL_BYTES, buildVhdFooter, fixedVhdFooterOf, type VhdFooter } from '../../lib/disk/vhd';
import type { RecoveryPoint } from '../../shared/replication-types';
import {
  KiB,
  MiB,
  applyAndPublish,
  blobService,
  deps,
  failureOf,
  firstImage,
  publishRawReplica,
  tmp,
  useApplierStorage,
} from '../helpers/applier-fixture';

useApplierStorage();

interface QemuInfo {
  format: string;
  'virtual-size': number;
}

function qemuInfo(file: string, format: string): QemuInfo {
  return JSON.parse(
    execFileSync('qemu-img', ['info', '--output', 'json', '-f', format, file]).toString(),
  ) as QemuInfo;
}

/** qemu-img compare: exits 0 when equal (a longer image must hold only zeros past the shorter one). */
function assertSame(a: string, aFormat: string, b: string, bFormat: string, what: string): void {
  try {
    execFileSync('qemu-img', ['compare', '-f', aFormat, '-F', bFormat, a, b], { stdio: 'pipe' });
  } catch (err) {
    assert.fail(`${what}: qemu-img compare: ${(err as { stdout?: Buffer }).stdout?.toString() ?? err}`);
  }
}

/** Downloads a whole page blob (or snapshot) as a file, as `az storage blob download` would. */
async function download(client: PageBlobClient, name: string): Promise<string> {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, await client.downloadToBuffer());
  return file;
}

async function exportRaw(point: RecoveryPoint, diskId: string): Promise<string> {
  const file = path.join(tmp, `${point.id}-${diskId}.raw`);
  await exportPoint(deps, { point, diskId, outFile: file });
  return file;
}

async function footerOf(client: PageBlobClient): Promise<VhdFooter | undefined> {
  const length = (await client.getProperties()).contentLength ?? 0;
  return fixedVhdFooterOf(await client.downloadToBuffer(length - 512, 512), length);
}

describe('replicas are fixed VHDs', () => {
  test('a downloaded replica is a fixed VHD equal to the point, before and after its disk grows', async () => {
    const machine = 'vm-vhd';
    const { image, extents } = firstImage(); // 6 MiB + 1.5 KiB
    const p1 = await applyAndPublish(machine, 1, 'v1', image, extents);
    const replica = replicaBlobClient(blobService, `${machine}/scsi0`);

    const vhd1 = await download(replica, 'replica-1.vhd');
    assert.equal(fs.statSync(vhd1).size, 7 * MiB + 512, 'virtual size (disk rounded up to a MiB) + footer');
    assert.deepEqual(qemuInfo(vhd1, 'vpc'), {
      ...qemuInfo(vhd1, 'vpc'),
      format: 'vpc',
      'virtual-size': 7 * MiB,
    });
    const footer1 = await footerOf(replica);
    assert.ok(footer1, 'a valid footer at the end');
    assert.equal(footer1.diskType, 2, 'fixed');
    assert.equal(footer1.currentSize, 7 * MiB);
    const raw1 = await exportRaw(p1, 'scsi0');
    assert.equal(fs.statSync(raw1).size, image.length, 'the raw export is the disk, not the VHD');
    assert.ok(fs.readFileSync(raw1).equals(image));
    assertSame(vhd1, 'vpc', raw1, 'raw', 'replica vs point v1');
    const snap1 = await download(replica.withSnapshot(p1.disks[0]!.snapshot), 'point-1.vhd');
    assertSame(snap1, 'vpc', raw1, 'raw', 'point v1 snapshot vs its export');

    // The disk grows to 9.5 MiB; the old footer's page (7 MiB) is left a hole by the cycle, so it
    // must read as zeros afterwards.
    const grown = Buffer.alloc(9 * MiB + 512);
    image.copy(grown);
    randomBytes(MiB).copy(grown, 8 * MiB);
    randomBytes(512).copy(grown, 9 * MiB);
    const p2 = await applyAndPublish(machine, 2, 'v2', grown, [{ offset: 8 * MiB, length: MiB + 512 }]);
    const vhd2 = await download(replica, 'replica-2.vhd');
    assert.equal(fs.statSync(vhd2).size, 10 * MiB + 512);
    assert.equal(qemuInfo(vhd2, 'vpc')['virtual-size'], 10 * MiB);
    const footer2 = await footerOf(replica);
    assert.ok(footer2);
    assert.equal(footer2.uniqueId, footer1.uniqueId, 'the disk keeps its VHD id for life');
    assert.ok(
      fs
        .readFileSync(vhd2)
        .subarray(7 * MiB, 7 * MiB + 512)
        .equals(Buffer.alloc(512)),
      'the old footer inside the new data area is cleared',
    );
    const raw2 = await exportRaw(p2, 'scsi0');
    assert.ok(fs.readFileSync(raw2).equals(grown));
    assertSame(vhd2, 'vpc', raw2, 'raw', 'replica vs point v2');
    // The earlier point is still the 7 MiB VHD it was.
    const snap1again = await download(replica.withSnapshot(p1.disks[0]!.snapshot), 'point-1b.vhd');
    assert.equal(qemuInfo(snap1again, 'vpc')['virtual-size'], 7 * MiB);
    assertSame(snap1again, 'vpc', raw1, 'raw', 'point v1 after the grow');

    // Publishing kept the data size (Set Metadata replaces metadata).
    const meta = (await replica.getProperties()).metadata ?? {};
    assert.equal(meta[DATA_BYTES_METADATA_KEY], String(grown.length));
    assert.equal(meta.osrcycle, '2');
    // Checksums cover the data area only.
    const sums = await replicaChecksums(deps, { machine, diskId: 'scsi0', blockBytes: 64 * KiB });
    assert.equal(sums.sizeBytes, grown.length);

    // A drill's disk is a copy of the point's snapshot: a fixed VHD too.
    const disks = await createRecoveredDisks(deps, { kind: 'drill', machine, job: 'j1', point: p2 });
    const copy = await download(failoverBlobClient(blobService, disks[0]!.blob), 'drill.vhd');
    assert.equal(qemuInfo(copy, 'vpc')['virtual-size'], 10 * MiB);
    assertSame(copy, 'vpc', raw2, 'raw', 'drill disk vs point v2');
  });

  test('a replica from before VHDs is converted in place; its old points stay readable and recoverable', async () => {
    const machine = 'vm-old';
    const { image } = firstImage();
    const size = image.length; // a multiple of 512
    // What the applier made before: a raw page blob of the disk's size, written, published.
    const { point: old, replica } = await publishRawReplica(machine, 'o1', image);
    assert.equal((await replica.getProperties()).contentLength, size, 'a raw replica');

    const ensured = await ensureReplicaDisk(deps, { machine, diskId: 'scsi0', sizeBytes: size });
    assert.deepEqual(ensured, { blob: `${machine}/scsi0`, existed: true, sizeBytes: size, appliedCycle: 1 });
    const vhd = await download(replica, 'converted.vhd');
    assert.equal(qemuInfo(vhd, 'vpc')['virtual-size'], 7 * MiB);
    assert.ok(fs.readFileSync(vhd).subarray(0, size).equals(image), 'data untouched');
    const etag = (await replica.getProperties()).etag;
    await ensureReplicaDisk(deps, { machine, diskId: 'scsi0', sizeBytes: size });
    assert.equal((await replica.getProperties()).etag, etag, 'a second call changes nothing');

    // The old (raw) point: exported as before, and a drill of it is made a fixed VHD.
    const rawOld = await exportRaw(old, 'scsi0');
    assert.ok(fs.readFileSync(rawOld).equals(image));
    const oldSnap = await replica.withSnapshot(old.disks[0]!.snapshot).getProperties();
    assert.equal(oldSnap.contentLength, size, 'the old point itself is left as it was');
    const disks = await createRecoveredDisks(deps, { kind: 'failover', machine, job: 'j1', point: old });
    const target = failoverBlobClient(blobService, disks[0]!.blob);
    const copy = await download(target, 'old-failover.vhd');
    assert.equal(qemuInfo(copy, 'vpc')['virtual-size'], 7 * MiB);
    assertSame(copy, 'vpc', rawOld, 'raw', 'failover disk of a pre-VHD point vs its export');
    assert.equal(
      (await target.getProperties()).metadata?.osrsource,
      `${old.disks[0]!.blob}@${old.disks[0]!.snapshot}`,
    );
    // A retried create keeps the copy (same source) and its footer.
    const before = (await footerOf(target))?.uniqueId;
    await createRecoveredDisks(deps, { kind: 'failover', machine, job: 'j1', point: old });
    assert.equal((await footerOf(target))?.uniqueId, before);

    // A new cycle after the conversion and its point.
    const next = Buffer.from(image);
    randomBytes(64 * KiB).copy(next, 2 * MiB);
    const p2 = await applyAndPublish(machine, 2, 'o2', next, [{ offset: 2 * MiB, length: 64 * KiB }]);
    const raw2 = await exportRaw(p2, 'scsi0');
    assert.ok(fs.readFileSync(raw2).equals(next));
    assertSame(await download(replica, 'converted-2.vhd'), 'vpc', raw2, 'raw', 'replica after a cycle');
  });

  test('an interrupted conversion or grow is finished by the next call', async () => {
    const data = randomBytes(MiB + 512);
    // Conversion interrupted after the resize: data size recorded, blob resized, no footer.
    const a = replicaBlobClient(blobService, 'vm-int/a');
    await a.create(data.length);
    await a.uploadPages(data, 0, data.length);
    await a.setMetadata({ [DATA_BYTES_METADATA_KEY]: String(data.length) });
    await a.resize(2 * MiB + 512);
    await ensureReplicaDisk(deps, { machine: 'vm-int', diskId: 'a', sizeBytes: data.length });
    const fa = await footerOf(a);
    assert.equal(fa?.currentSize, 2 * MiB);
    assert.ok((await a.downloadToBuffer(0, data.length)).equals(data));

    // Grow interrupted after the resize: the old footer (1 MiB) is still inside the data area.
    const b = replicaBlobClient(blobService, 'vm-int/b');
    await ensureReplicaDisk(deps, { machine: 'vm-int', diskId: 'b', sizeBytes: MiB });
    const id = (await footerOf(b))?.uniqueId;
    await b.resize(3 * MiB + 512);
    assert.equal(await footerOf(b), undefined);
    const grown = await ensureReplicaDisk(deps, { machine: 'vm-int', diskId: 'b', sizeBytes: 3 * MiB });
    assert.equal(grown.sizeBytes, 3 * MiB);
    const fb = await footerOf(b);
    assert.equal(fb?.currentSize, 3 * MiB);
    assert.equal(fb?.uniqueId, id, 'the id survives the interrupted grow');
    assert.ok((await b.downloadToBuffer(MiB, 512)).equals(Buffer.alloc(512)), 'old footer cleared');

    // Grow interrupted after the new footer: the old one is still there and is cleared.
    const c = replicaBlobClient(blobService, 'vm-int/c');
    await ensureReplicaDisk(deps, { machine: 'vm-int', diskId: 'c', sizeBytes: MiB });
    const cid = (await footerOf(c))?.uniqueId;
    await c.resize(2 * MiB + 512);
    await c.uploadPages(buildVhdFooter({ virtualBytes: 2 * MiB, uniqueId: cid }), 2 * MiB, 512);
    await ensureReplicaDisk(deps, { machine: 'vm-int', diskId: 'c', sizeBytes: 2 * MiB });
    assert.ok((await c.downloadToBuffer(MiB, 512)).equals(Buffer.alloc(512)), 'old footer cleared');
    assert.equal((await footerOf(c))?.uniqueId, cid);
  });

  test('a disk whose VHD would not fit in a page blob (8 TiB) is refused, non-retryably, with the fix', async () => {
    const sizeBytes = MAX_VHD_VIRTUAL_BYTES + 512;
    await assert.rejects(ensureReplicaDisk(deps, { machine: 'vm-big', diskId: 'd0', sizeBytes }), (err) => {
      const failure = failureOf(err);
      assert.equal(failure.type, DISK_TOO_LARGE);
      assert.equal(failure.nonRetryable, true);
      assert.match(failure.message, /would not fit in an Azure page blob/);
      assert.match(failure.message, /Shrink the disk/);
      return true;
    });
    assert.equal(await replicaBlobClient(blobService, 'vm-big/d0').exists(), false, 'nothing created');
    // The biggest disk that fits is accepted (a sparse blob: nothing is written but the footer).
    const max = await ensureReplicaDisk(deps, {
      machine: 'vm-big',
      diskId: 'd1',
      sizeBytes: MAX_VHD_VIRTUAL_BYTES,
    });
    assert.equal(max.sizeBytes, MAX_VHD_VIRTUAL_BYTES);
    assert.equal(
      (await replicaBlobClient(blobService, 'vm-big/d1').getProperties()).contentLength,
      8 * 1024 * 1024 * MiB - MiB + 512,
    );
  });
});
