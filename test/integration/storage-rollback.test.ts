// Storage that loses writes it had acknowledged (Azurite keeps its metadata in memory and saves it
// every 5 s: a kill -9 forgets up to that much) leaves a replica older than the dirty bitmaps
// assume. OSR notices from the cycle storage remembers and resynchronizes by checksums instead of
// building wrong points. Here the loss is made by hand: the replica's pages and cycle marker are
// set back, as a restarted emulator would have them.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { APPLIED_CYCLE_METADATA_KEY, replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
import * as machines from '../../operations/machines';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let bed: Testbed;
let vm: TestMachine;

before(async () => {
  bed = await startTestbed();
  vm = await startTestMachine({ sizes: [4 * MiB] });
});

after(async () => {
  await bed?.stop();
  await vm?.stop();
});

test('a replica set back by storage is detected and resynchronized: the next point equals the source', async () => {
  const { ctx } = bed;
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(MiB, 1));
  await disk.flush();
  await machines.protect(ctx, {
    name: 'rb1',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(ctx, 'rb1', (s) => s.state === 'protected');
  await disk.write(2 * MiB, pseudoRandom(512 * 1024, 2));
  await disk.flush();
  await machines.takePoint(ctx, 'rb1', { kind: 'crash' });

  // What a storage restart that lost the last few seconds looks like: the second cycle's pages
  // and its marker are gone from the replica.
  const replica = replicaBlobClient(ctx.blobService, 'rb1/disk0');
  await replica.clearPages(2 * MiB, 512 * 1024);
  // storage remembers only the first cycle
  await replica.setMetadata({ [APPLIED_CYCLE_METADATA_KEY]: '1' });

  await disk.write(3 * MiB, pseudoRandom(64 * 1024, 3));
  await disk.flush();
  const third = await machines.takePoint(ctx, 'rb1', { kind: 'crash' });
  const status = await machines.machineStatus(ctx, 'rb1');
  const alert = status.alerts.find((a) => a.kind === 'storage-rolled-back');
  assert.ok(alert, `an alert says storage lost writes: ${JSON.stringify(status.alerts)}`);
  assert.match(alert.message, /resynchronizing it by checksums/);
  const image = await exportedImage(ctx, await pointById(ctx, 'rb1', third.id));
  assertSameImage(image, await vm.readAll(), 'the point after the rollback');
});
