// The CBT connector against a real qemu-storage-daemon, before any tracking is enabled: the
// daemon's disks, QMP errors and a monitor held by another client, a freeze refused without
// tracking. Tracking, frozen points, releases and restarts: cbt-connector.test.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CbtConnector } from '../../lib/qemu/cbt-connector';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { QmpClient, QmpError } from '../../lib/qemu/qmp-client';
import { createQcow2, startStorageDaemon } from '../../lib/qemu/storage-daemon';
import type { StorageDaemon } from '../../lib/qemu/storage-daemon';

const SIZE = 64 * 1024 * 1024;

describe('CbtConnector against qemu-storage-daemon', () => {
  let dir: string;
  let images: string[];
  let daemon: StorageDaemon;
  let qmp: QmpClient;
  let cbt: CbtConnector;
  const writers = new Map<string, NbdClient>();

  const start = async (): Promise<void> => {
    daemon = await startStorageDaemon({ stateDir: path.join(dir, 'state'), images });
    qmp = await QmpClient.connect(daemon.qmpSocket);
    cbt = new CbtConnector(qmp, { workDir: path.join(dir, 'work'), nbdSocket: daemon.nbdSocket });
    for (const node of ['disk0', 'disk1']) {
      writers.set(node, await NbdClient.connect({ socket: daemon.nbdSocket, exportName: node }));
    }
  };
  const stop = async (): Promise<void> => {
    for (const w of writers.values()) await w.close();
    writers.clear();
    await qmp?.close();
    await daemon?.stop();
  };

  before(async () => {
    dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'osr-cbt-'));
    images = [path.join(dir, 'disk0.qcow2'), path.join(dir, 'disk1.qcow2'), path.join(dir, 'disk2.raw')];
    await createQcow2(images[0] as string, SIZE);
    await createQcow2(images[1] as string, SIZE);
    await fs.promises.writeFile(images[2] as string, '');
    await fs.promises.truncate(images[2] as string, SIZE);
    await start();
  });

  after(async () => {
    await stop();
    if (dir) await fs.promises.rm(dir, { recursive: true, force: true });
  });
  it('lists the disks of the daemon', async () => {
    const disks = (await cbt.listDisks()).sort((a, b) => a.node.localeCompare(b.node));
    assert.deepEqual(
      disks.map((d) => [d.node, d.format, d.size, d.file, d.hasPersistentBitmap, d.tracking]),
      [
        ['disk0', 'qcow2', SIZE, images[0], false, null],
        ['disk1', 'qcow2', SIZE, images[1], false, null],
        ['disk2', 'raw', SIZE, images[2], false, null],
      ],
    );
  });

  it('gets QMP errors with their class, and a clear error while another client holds the monitor', async () => {
    await assert.rejects(
      qmp.execute('block-dirty-bitmap-remove', { node: 'nope', name: 'x' }),
      (err: unknown) => {
        assert.ok(err instanceof QmpError);
        assert.equal(err.errorClass, 'GenericError');
        assert.match(err.desc, /nope/);
        return true;
      },
    );
    await assert.rejects(
      QmpClient.connect(daemon.qmpSocket, { greetingTimeoutMs: 300 }),
      /no greeting within 300 ms: another client probably holds this monitor/,
    );
    await assert.rejects(QmpClient.connect(path.join(dir, 'none.sock')), /no QMP socket at .*none\.sock/);
    // Still usable, with replies matched to their commands when several are queued.
    const [a, b] = await Promise.all([
      qmp.execute<unknown[]>('query-jobs'),
      qmp.execute<unknown[]>('query-block-exports'),
    ]);
    assert.deepEqual(a, []);
    assert.equal(b.length, 3);
  });

  it('refuses to freeze a disk without tracking', async () => {
    await assert.rejects(
      cbt.freeze(['disk0'], 'no-tracking'),
      /not running on disk0 \(never enabled.*call enableTracking/,
    );
    assert.deepEqual(await cbt.listFrozen(), []);
  });
});
