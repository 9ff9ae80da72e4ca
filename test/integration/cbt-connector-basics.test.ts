// The CBT connector against a real qemu-storage-daemon, before any tracking is enabled: the
// daemon's disks, QMP errors and a monitor held by another client, a freeze refused without
// tracking. Tracking, frozen points, releases and restarts: cbt-connector.test.ts.
import * as path from 'node:path';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { QmpClient, QmpError } from '../../lib/qemu/qmp-client';
import { CbtDaemonBed } from '../helpers/cbt-daemon';

const SIZE = 64 * 1024 * 1024;

describe('CbtConnector against qemu-storage-daemon', () => {
  const bed = new CbtDaemonBed(SIZE);

  it('lists the disks of the daemon', async () => {
    const disks = (await bed.cbt.listDisks()).sort((a, b) => a.node.localeCompare(b.node));
    assert.deepEqual(
      disks.map((d) => [d.node, d.format, d.size, d.file, d.hasPersistentBitmap, d.tracking]),
      [
        ['disk0', 'qcow2', SIZE, bed.images[0], false, null],
        ['disk1', 'qcow2', SIZE, bed.images[1], false, null],
        ['disk2', 'raw', SIZE, bed.images[2], false, null],
      ],
    );
  });

  it('gets QMP errors with their class, and a clear error while another client holds the monitor', async () => {
    await assert.rejects(
      bed.qmp.execute('block-dirty-bitmap-remove', { node: 'nope', name: 'x' }),
      (err: unknown) => {
        assert.ok(err instanceof QmpError);
        assert.equal(err.errorClass, 'GenericError');
        assert.match(err.desc, /nope/);
        return true;
      },
    );
    await assert.rejects(
      QmpClient.connect(bed.daemon.qmpSocket, { greetingTimeoutMs: 300 }),
      /no greeting within 300 ms: another client probably holds this monitor/,
    );
    await assert.rejects(QmpClient.connect(path.join(bed.dir, 'none.sock')), /no QMP socket at .*none\.sock/);
    // Still usable, with replies matched to their commands when several are queued.
    const [a, b] = await Promise.all([
      bed.qmp.execute<unknown[]>('query-jobs'),
      bed.qmp.execute<unknown[]>('query-block-exports'),
    ]);
    assert.deepEqual(a, []);
    assert.equal(b.length, 3);
  });

  it('refuses to freeze a disk without tracking', async () => {
    await assert.rejects(
      bed.cbt.freeze(['disk0'], 'no-tracking'),
      /not running on disk0 \(never enabled.*call enableTracking/,
    );
    assert.deepEqual(await bed.cbt.listFrozen(), []);
  });
});
