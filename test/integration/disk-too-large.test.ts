// A disk whose replica, a fixed VHD (the disk rounded up to a MiB plus a 512-byte footer), would
// not fit in an Azure page blob (8 TiB) is refused at its first sync: the replica step fails
// non-retryably with DiskTooLarge, and the machine's status and alerts say why and what to do.
// The source is a real (sparse) 9 TiB qcow2 disk served by a qemu-storage-daemon.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
import * as machines from '../../operations/machines';
import { waitForStatus } from '../helpers/protection';
import { startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestbed, type Testbed } from '../helpers/testbed';

const TiB = 1024 ** 4;
let bed: Testbed;
let vm: TestMachine;

before(async () => {
  bed = await startTestbed();
  vm = await startTestMachine({ sizes: [9 * TiB] });
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
});

test('a disk over the page-blob limit is refused with the fix, shown in status and alerts', async () => {
  await machines.protect(bed.ctx, {
    name: 'big1',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  const status = await waitForStatus(
    bed.ctx,
    'big1',
    (s) => s.failing !== undefined && s.alerts.some((a) => a.kind === 'cycle-failed'),
    180_000,
  );
  assert.match(status.failing?.reason ?? '', /would not fit in an Azure page blob/);
  assert.match(status.failing?.reason ?? '', /Shrink the disk/);
  const alert = status.alerts.find((a) => a.kind === 'cycle-failed');
  assert.match(alert?.message ?? '', /would not fit in an Azure page blob/);
  assert.equal(
    await replicaBlobClient(bed.ctx.blobService, 'big1/disk0').exists(),
    false,
    'no replica was made',
  );
});
