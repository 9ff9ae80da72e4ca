// A recovered machine's images are materialized on the recovery host by an activity that Temporal
// may retry while an earlier attempt still runs (its heartbeat lost on a loaded host). No attempt
// may then write, truncate or delete images a running machine already uses: a late attempt must
// find the finished images and hand back the same ones. Real Azurite, qemu-img and
// qemu-storage-daemon.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { dematerialize, materialize, materializedDir } from '../../activities/cloud-applier/materialize';
import { CONTAINERS, azuriteConnectionString, ensureContainers } from '../../lib/azure/blob-client';
import { stopPid, type RunningProcess } from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';
import { runningStorageDaemon } from '../../lib/qemu/storage-daemon';
import type { RecoveredDisk } from '../../shared/recovery-types';
import { startAzurite } from '../../stack/azurite';
import { pseudoRandom } from '../helpers/qemu-machine';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
let azurite: RunningProcess;
let blobService: BlobServiceClient;
let stateDir: string;
const content = Buffer.alloc(SIZE);

before(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-mat-'));
  const port = await freePort();
  azurite = await startAzurite({ port, logFile: path.join(stateDir, 'azurite.log') });
  blobService = BlobServiceClient.fromConnectionString(azuriteConnectionString(port));
  await ensureContainers(blobService);
  // Data in two places, a hole between: what a replica's point looks like.
  pseudoRandom(MiB, 7).copy(content, 0);
  pseudoRandom(2 * MiB, 8).copy(content, 5 * MiB);
  const blob = blobService.getContainerClient(CONTAINERS.failover).getPageBlobClient('m1-j1/disk0');
  await blob.create(SIZE);
  await blob.uploadPages(content.subarray(0, MiB), 0, MiB);
  await blob.uploadPages(content.subarray(5 * MiB, 7 * MiB), 5 * MiB, 2 * MiB);
});

after(async () => {
  if (azurite) await stopPid(azurite.pid);
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

const disks: RecoveredDisk[] = [{ diskId: 'disk0', blob: 'm1-j1/disk0', sizeBytes: SIZE, copy: 'server' }];
const run = (job: string, serve: boolean) =>
  materialize({ blobService, stateDir }, { machine: 'm1', job, disks, settings: { format: 'qcow2' }, serve });

const imageBytes = (file: string): Buffer => {
  const raw = path.join(stateDir, 'check.raw');
  execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', file, raw]);
  const bytes = fs.readFileSync(raw);
  fs.rmSync(raw);
  return bytes;
};
const digest = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test('two attempts at once, then a late one: the same images, never made again under a running machine', async () => {
  const [first, second] = await Promise.all([run('j1', false), run('j1', false)]);
  assert.deepEqual(second.files, first.files);
  const image = first.files[0]?.path as string;
  assert.ok(imageBytes(image).equals(content), 'the image is the recovered disk');

  // A machine runs on the image (a libvirt domain opens it): its file must stay the same file.
  const before = fs.statSync(image);
  const held = fs.openSync(image, 'r+');
  const sum = digest(image);
  try {
    const late = await run('j1', false);
    assert.deepEqual(late.files, first.files);
    const now = fs.statSync(image);
    assert.equal(now.ino, before.ino, 'the running machine’s image was not replaced');
    assert.equal(now.mtimeMs, before.mtimeMs, 'nor written');
    assert.equal(digest(image), sum);
  } finally {
    fs.closeSync(held);
  }
  const dir = materializedDir(stateDir, 'm1', 'j1');
  assert.deepEqual(
    fs.readdirSync(path.dirname(dir)).filter((n) => n.startsWith('m1-j1')),
    ['m1-j1'],
    'no attempt folder is left beside the job’s',
  );
  await dematerialize({ dir });
  assert.equal(fs.existsSync(dir), false);
});

test('a retry after the daemon started finds it serving, and dematerialize leaves nothing', async () => {
  const first = await run('j2', true);
  assert.ok(first.pid);
  const again = await run('j2', true);
  assert.equal(again.pid, first.pid, 'one daemon, started once');
  assert.equal(again.nbdSocket, first.nbdSocket);
  const dir = materializedDir(stateDir, 'm1', 'j2');
  assert.equal(await runningStorageDaemon(dir), first.pid);
  await dematerialize({ dir });
  assert.equal(await runningStorageDaemon(dir), undefined);
  assert.deepEqual(
    fs.readdirSync(path.dirname(dir)).filter((n) => n.startsWith('m1-j2')),
    [],
  );
});
