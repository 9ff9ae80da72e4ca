// OSR against a real qemu-system VM (the tiny guest of scripts/build-test-guest.sh): the process
// server's disk discovery and frozen points in time over the VM's QMP socket (the connector
// starts the VM's NBD server itself), and stopping a VM's writes with QMP `stop` before a planned
// failover. The guest writes numbered records through virtio-blk; what a point holds is read back
// over NBD, as the replication reads it.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { discoverDisks, freezePoint, releasePoint } from '../../activities/process-server/machine-source';
import { stopSourceWrites } from '../../activities/process-server/stop-writes';
import { NbdClient } from '../../lib/qemu/nbd-client';
import type { FrozenPoint, ProtectedMachine } from '../../shared/replication-types';
import { highestRecord, readRecords, startTestVm, type TestVm } from '../helpers/test-vm';

const MiB = 1024 * 1024;

describe('a real VM (qemu-system, virtio-blk guest)', () => {
  let vm: TestVm;
  let machine: ProtectedMachine;
  let deps: { workRoot: string };

  before(async () => {
    vm = await startTestVm({ disks: [16 * MiB, 8 * MiB] });
    machine = {
      name: 'vm1',
      site: 'primary',
      source: { type: 'qemu', qmpSocket: vm.qmpSocket },
      policy: 'default',
      createdAt: new Date().toISOString(),
    };
    deps = { workRoot: path.join(vm.dir, 'work') };
  });

  after(async () => {
    await vm?.stop();
  });

  /** Every record of one disk of a frozen point, read over its NBD export. */
  const recordsOfPoint = async (point: FrozenPoint, diskId: string): Promise<number[]> => {
    const disk = point.disks.find((d) => d.diskId === diskId);
    assert.ok(disk, `point ${point.pitId} has no ${diskId}`);
    const nbd = await NbdClient.connect({ socket: disk.nbdSocket, exportName: disk.exportName });
    try {
      return (await readRecords(nbd)).map((r) => r.record);
    } finally {
      await nbd.close();
    }
  };

  it('the guest writes through virtio-blk to the disks QEMU serves', async () => {
    const r = await vm.run('cat /proc/version; ls /dev/vd*');
    assert.equal(r.code, 0);
    assert.match(r.output, /Linux version/);
    assert.deepEqual(
      vm.disks.map((d) => d.node),
      ['disk0', 'disk1'],
    );
    for (const d of vm.disks)
      assert.ok(r.output.includes(d.guestDevice), `${d.guestDevice} missing in the guest`);
    assert.deepEqual(await vm.run('echo out; echo err >&2; exit 7'), { code: 7, output: 'out\nerr\n' });
    await vm.writeRecord('disk0', 1, 'hello');
    assert.equal(await vm.readRecord('disk0', 1), 1);
    // Acknowledged means on the image file: visible from outside the guest.
    assert.equal(await highestRecord(vm.disks[0]?.file as string), 1);
  });

  it('discoverDisks finds disk0 and disk1 over the VM’s QMP socket', async () => {
    const { disks } = await discoverDisks(deps, machine);
    assert.deepEqual(
      disks
        .map((d) => ({ id: d.diskId, size: d.sizeBytes, format: d.format }))
        .sort((a, b) => a.id.localeCompare(b.id)),
      [
        { id: 'disk0', size: 16 * MiB, format: 'qcow2' },
        { id: 'disk1', size: 8 * MiB, format: 'qcow2' },
      ],
    );
  });

  it('a frozen point holds exactly the records written before the freeze, on both disks', async () => {
    for (let n = 2; n <= 6; n++) {
      await vm.writeRecord('disk0', n, `before point disk0`);
      await vm.writeRecord('disk1', 100 + n, `before point disk1`);
    }
    const point = await freezePoint(deps, {
      machine,
      cycle: 1,
      modes: { disk0: 'full', disk1: 'full' },
      quiesce: false,
    });
    try {
      assert.deepEqual(
        point.disks.map((d) => d.diskId),
        ['disk0', 'disk1'],
      );
      // The guest keeps writing after the freeze, also over sectors the point holds.
      for (let n = 7; n <= 10; n++) await vm.writeRecord('disk0', n, 'after point');
      await vm.writeRecord('disk0', 3, 'after point overwrites 3');
      await vm.writeRecord('disk1', 200, 'after point');

      assert.deepEqual(await recordsOfPoint(point, 'disk0'), [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(await recordsOfPoint(point, 'disk1'), [102, 103, 104, 105, 106]);
      // The live disks have everything.
      assert.equal(await vm.readRecord('disk0', 10), 10);
      assert.equal(await vm.readRecord('disk1', 200), 200);
    } finally {
      await releasePoint(deps, machine, point.pitId, true);
    }
  });

  it('stopSourceWrites pauses the VM with QMP stop: a guest write waits until the VM is resumed', async () => {
    const result = await stopSourceWrites(machine);
    assert.equal(result.method, 'qmp-stop');
    assert.equal(await vm.status(), 'paused');

    let written = false;
    const write = vm.writeRecord('disk0', 50, 'issued while stopped').then(() => {
      written = true;
    });
    write.catch(() => undefined); // awaited below; no unhandled rejection if an assertion fails first
    // The final point of a planned failover, cut while the VM is stopped, does not have it, and
    // the write has not completed by the time the point was read back.
    const point = await freezePoint(deps, { machine, cycle: 2, modes: { disk0: 'delta' }, quiesce: false });
    try {
      const records = await recordsOfPoint(point, 'disk0');
      assert.equal(Math.max(...records), 10);
      assert.ok(!records.includes(50));
    } finally {
      await releasePoint(deps, machine, point.pitId, true);
    }
    assert.equal(written, false, 'a guest write completed while the VM was stopped');
    assert.equal(await vm.status(), 'paused');

    await vm.resume();
    await write;
    assert.equal(await vm.readRecord('disk0', 50), 50);
    assert.equal(await highestRecord(vm.disks[0]?.file as string), 50);
  });
});
