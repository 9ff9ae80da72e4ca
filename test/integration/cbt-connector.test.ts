// The CBT connector against a real qemu-storage-daemon: bitmaps, frozen points in time,
// release on success and failure, a two-disk transaction, and restarts of caller and daemon.
// Listing disks, QMP errors and a freeze without tracking: cbt-connector-basics.test.ts; freezes
// interrupted by a crash of the caller: cbt-connector-interrupted.test.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CbtConnector, allocatedExtents, dirtyExtents } from '../../lib/qemu/cbt-connector';
import type { Extent, FrozenDisk, FrozenView } from '../../lib/qemu/cbt-connector';
import type { NbdClient } from '../../lib/qemu/nbd-client';
import { QmpClient } from '../../lib/qemu/qmp-client';
import { CbtDaemonBed } from '../helpers/cbt-daemon';

const BLOCK = 64 * 1024; // the default bitmap granularity: a qcow2 cluster
const SIZE = 64 * 1024 * 1024;

describe('CbtConnector against qemu-storage-daemon', () => {
  const bed = new CbtDaemonBed(SIZE);
  const writer = (node: string): NbdClient => {
    const w = bed.writers.get(node);
    assert.ok(w, `no writer for ${node}`);
    return w;
  };
  /** Writes whole bitmap blocks filled with `byte`, as the machine's workload would. */
  const writeBlocks = async (node: string, blocks: number[], byte: number): Promise<void> => {
    for (const b of blocks) await writer(node).write(b * BLOCK, Buffer.alloc(BLOCK, byte));
    await writer(node).flush();
  };
  const blocksOf = (extents: Extent[]): Extent[] =>
    extents.map((e) => ({ offset: e.offset / BLOCK, length: e.length / BLOCK }));
  const withView = async <T>(
    disk: FrozenDisk | undefined,
    fn: (nbd: NbdClient) => Promise<T>,
  ): Promise<T> => {
    assert.ok(disk);
    const nbd = await bed.cbt.openView(disk);
    try {
      return await fn(nbd);
    } finally {
      await nbd.close();
    }
  };
  const dirtyBlocks = (view: FrozenView, i = 0): Promise<Extent[]> =>
    withView(view.disks[i], async (nbd) => blocksOf(await dirtyExtents(nbd, view.disks[i] as FrozenDisk)));

  it('enables persistent tracking on qcow2 idempotently, volatile on raw', async () => {
    const first = await bed.cbt.enableTracking('disk0');
    assert.equal(first.bitmap, 'osr-1');
    assert.equal(first.persistent, true);
    assert.equal(first.granularity, BLOCK);
    assert.equal(first.fullSyncRequired, true);
    const again = await bed.cbt.enableTracking('disk0');
    assert.equal(again.bitmap, 'osr-1');
    assert.equal(again.fullSyncRequired, false);

    const raw = await bed.cbt.enableTracking('disk2');
    assert.equal(raw.persistent, false);
    assert.match(raw.warnings.join('\n'), /volatile.*full resync/);

    const disks = await bed.cbt.listDisks();
    assert.equal(disks.find((d) => d.node === 'disk0')?.hasPersistentBitmap, true);
    assert.equal(disks.find((d) => d.node === 'disk2')?.hasPersistentBitmap, false);
    assert.equal(disks.find((d) => d.node === 'disk2')?.tracking?.persistent, false);
  });

  let view1: FrozenView;

  it('freezes a view as of the freeze, with exactly the blocks written before it', async () => {
    await writeBlocks('disk0', [3, 10, 11], 0x11);
    view1 = await bed.cbt.freeze(['disk0'], 'pit-1');
    await writeBlocks('disk0', [10, 20], 0x22);

    assert.equal(view1.disks.length, 1);
    assert.equal(view1.disks[0]?.bitmap, 'osr-1');
    assert.equal(view1.disks[0]?.size, SIZE);
    assert.deepEqual(await dirtyBlocks(view1), [
      { offset: 3, length: 1 },
      { offset: 10, length: 2 },
    ]);
    await withView(view1.disks[0], async (nbd) => {
      assert.equal(nbd.readOnly, true);
      assert.ok(
        (await nbd.read(10 * BLOCK, BLOCK)).equals(Buffer.alloc(BLOCK, 0x11)),
        'frozen block 10 changed',
      );
      assert.ok(
        (await nbd.read(20 * BLOCK, BLOCK)).equals(Buffer.alloc(BLOCK)),
        'a later write shows in the view',
      );
      // Block 20's old content (a hole) was copied aside as zeros when it was rewritten: the view
      // may list it as data, and it reads as zeros (above).
      const allocated = blocksOf(await allocatedExtents(nbd)).filter((e) => e.offset !== 20);
      assert.deepEqual(allocated, [
        { offset: 3, length: 1 },
        { offset: 10, length: 2 },
      ]);
    });
    // The machine itself sees its new data.
    assert.ok((await writer('disk0').read(10 * BLOCK, BLOCK)).equals(Buffer.alloc(BLOCK, 0x22)));
    // The disk stays listed (not hidden under the fleecing overlay) and shows the frozen bitmap.
    const disk0 = (await bed.cbt.listDisks()).find((d) => d.node === 'disk0');
    assert.deepEqual(disk0?.tracking, {
      bitmap: 'osr-2',
      generation: 2,
      persistent: true,
      granularity: BLOCK,
      frozenBitmap: 'osr-1',
    });
  });

  it('returns the same view to a repeated freeze and to attach from a new connection', async () => {
    assert.deepEqual(await bed.cbt.freeze(['disk0'], 'pit-1'), view1);
    await assert.rejects(bed.cbt.freeze(['disk0', 'disk1'], 'pit-1'), /already frozen for disk0/);
    await assert.rejects(bed.cbt.freeze(['disk0'], 'pit-other'), /already frozen by point in time pit-1/);

    // A restarted process server: new QMP connection (QEMU serves one at a time), new connector.
    await bed.qmp.close();
    bed.qmp = await QmpClient.connect(bed.daemon.qmpSocket);
    bed.cbt = new CbtConnector(bed.qmp, {
      workDir: path.join(bed.dir, 'work'),
      nbdSocket: bed.daemon.nbdSocket,
    });
    assert.deepEqual(await bed.cbt.attach('pit-1'), view1);
    assert.deepEqual(await bed.cbt.listFrozen(), ['pit-1']);
    assert.equal(await bed.cbt.attach('pit-unknown'), null);
  });

  it('release(success) forgets the frozen changes; the next freeze shows only later writes', async () => {
    assert.deepEqual(await bed.cbt.release('pit-1', { success: true }), {
      released: true,
      fullSyncRequired: [],
    });
    assert.deepEqual(await bed.cbt.release('pit-1', { success: true }), {
      released: false,
      fullSyncRequired: [],
    });
    assert.equal(await bed.cbt.attach('pit-1'), null);
    assert.deepEqual(await fs.promises.readdir(path.join(bed.dir, 'work')), []);
    const exports = await bed.qmp.execute<{ id: string }[]>('query-block-exports');
    assert.deepEqual(exports.map((e) => e.id).sort(), ['disk0', 'disk1', 'disk2']);
    assert.deepEqual(await bed.qmp.execute('query-jobs'), []);

    const view2 = await bed.cbt.freeze(['disk0'], 'pit-2');
    assert.equal(view2.disks[0]?.bitmap, 'osr-2');
    assert.deepEqual(await dirtyBlocks(view2), [
      { offset: 10, length: 1 },
      { offset: 20, length: 1 },
    ]);
    await withView(view2.disks[0], async (nbd) => {
      assert.ok((await nbd.read(10 * BLOCK, BLOCK)).equals(Buffer.alloc(BLOCK, 0x22)));
    });
    await writeBlocks('disk0', [30], 0x33);
    assert.deepEqual(await bed.cbt.release('pit-2', { success: false }), {
      released: true,
      fullSyncRequired: [],
    });
  });

  it('release(failure) keeps the earlier dirty extents for the next cycle', async () => {
    await writeBlocks('disk0', [40], 0x44);
    const view3 = await bed.cbt.freeze(['disk0'], 'pit-3');
    assert.equal(view3.disks[0]?.bitmap, 'osr-3');
    assert.deepEqual(await dirtyBlocks(view3), [
      { offset: 10, length: 1 },
      { offset: 20, length: 1 },
      { offset: 30, length: 1 },
      { offset: 40, length: 1 },
    ]);
    // Released twice, as a retried activity would: the second call must change nothing.
    await bed.cbt.release('pit-3', { success: true });
    await bed.cbt.release('pit-3', { success: false });
    const disk0 = (await bed.cbt.listDisks()).find((d) => d.node === 'disk0');
    assert.equal(disk0?.tracking?.bitmap, 'osr-4');
    assert.equal(disk0?.tracking?.frozenBitmap, null);
    const bitmaps = await bitmapNames(bed.qmp, 'disk0');
    assert.deepEqual(bitmaps, ['osr-4']);
  });

  it('freezes two disks in one transaction: a consistent cut across them', async () => {
    await bed.cbt.enableTracking('disk1');
    await writeBlocks('disk1', [5], 0x55);
    // The workload writes a counter to disk0 then to disk1, one after the other, so at every
    // instant disk1 holds the same value as disk0 or the one before it. Several rounds, since
    // one round could by luck fall between two writes even if the disks were frozen apart.
    let counter = 0;
    // Resolves once the workload has written both disks' copy of record `n`.
    let waiting: { n: number; resolve: () => void } | undefined;
    const reached = (n: number) => new Promise<void>((resolve) => (waiting = { n, resolve }));
    for (let round = 0; round < 5; round++) {
      let running = true;
      const workload = (async () => {
        while (running) {
          counter++;
          const buf = Buffer.alloc(4096);
          buf.writeUInt32BE(counter, 0);
          await writer('disk0').write(50 * BLOCK, buf);
          await writer('disk1').write(50 * BLOCK, buf);
          if (waiting && counter >= waiting.n) waiting.resolve();
        }
      })();
      const before = counter;
      // The freeze falls inside the workload: records are written before it and after it.
      await reached(before + 5);
      const view = await bed.cbt.freeze(['disk0', 'disk1'], `pit-4-${round}`);
      await reached(counter + 2);
      running = false;
      await workload;

      const seen = await Promise.all(
        [0, 1].map((i) =>
          withView(view.disks[i], async (nbd) => (await nbd.read(50 * BLOCK, 4)).readUInt32BE(0)),
        ),
      );
      const [c0, c1] = seen as [number, number];
      assert.ok(
        c0 > before && c0 < counter,
        `the freeze fell outside the workload (${c0} of ${before}..${counter})`,
      );
      assert.ok(c1 === c0 || c1 === c0 - 1, `not a consistent cut: disk0=${c0} disk1=${c1}`);

      if (round === 0) {
        assert.deepEqual(
          view.disks.map((d) => [d.node, d.bitmap]),
          [
            ['disk0', 'osr-4'],
            ['disk1', 'osr-1'],
          ],
        );
        assert.deepEqual(await dirtyBlocks(view, 0), [{ offset: 50, length: 1 }]);
        assert.deepEqual(await dirtyBlocks(view, 1), [
          { offset: 5, length: 1 },
          { offset: 50, length: 1 },
        ]);
      }
      await bed.cbt.release(`pit-4-${round}`, { success: true });
    }
  });

  it('after a daemon restart during a freeze, nothing written before it is forgotten', async () => {
    await writeBlocks('disk0', [60], 0x60);
    await bed.cbt.freeze(['disk0'], 'pit-5');
    await writeBlocks('disk0', [61], 0x61);
    await bed.stop(); // graceful: QEMU stores both persistent bitmaps
    await bed.start();

    assert.equal(await bed.cbt.attach('pit-5'), null, 'the view died with the daemon');
    // Readers may have used the lost view: the same id must not come back with other data.
    await assert.rejects(bed.cbt.freeze(['disk0'], 'pit-5'), /pit-5 was frozen but is lost/);
    const disks = await bed.cbt.listDisks();
    assert.equal(disks.find((d) => d.node === 'disk0')?.hasPersistentBitmap, true);
    assert.equal(disks.find((d) => d.node === 'disk2')?.tracking, null, 'raw tracking should be lost');

    assert.deepEqual(await bed.cbt.release('pit-5', { success: false }), {
      released: true,
      fullSyncRequired: [],
    });
    const view = await bed.cbt.freeze(['disk0'], 'pit-6');
    assert.deepEqual(await dirtyBlocks(view), [
      { offset: 50, length: 1 },
      { offset: 60, length: 2 },
    ]);
    await bed.cbt.release('pit-6', { success: true });
  });

  it('merges back a frozen bitmap whose point in time was lost', async () => {
    await writeBlocks('disk0', [70], 0x70);
    await bed.cbt.freeze(['disk0'], 'pit-7');
    await bed.stop();
    await fs.promises.rm(path.join(bed.dir, 'work'), { recursive: true }); // the manifest is gone too
    await bed.start();
    await writeBlocks('disk0', [71], 0x71);
    const view = await bed.cbt.freeze(['disk0'], 'pit-8');
    assert.deepEqual(await dirtyBlocks(view), [{ offset: 70, length: 2 }]);
    await bed.cbt.release('pit-8', { success: true });
  });

  it('after QEMU is killed, tracking is reported lost and restarts with a full sync', async () => {
    await writeBlocks('disk0', [90], 0x90);
    process.kill(bed.daemon.pid, 'SIGKILL');
    await bed.stop();
    await bed.start();
    const disk0 = (await bed.cbt.listDisks()).find((d) => d.node === 'disk0');
    assert.equal(disk0?.tracking, null);
    assert.equal(disk0?.hasPersistentBitmap, false);
    // disk0's bitmap was created after the daemon last opened the image, so it was never
    // written there and is simply gone; disk1's was loaded from the image and is now inconsistent.
    await assert.rejects(
      bed.cbt.freeze(['disk0'], 'pit-10'),
      /not running on disk0 \(never enabled, or lost/,
    );
    await assert.rejects(
      bed.cbt.freeze(['disk1'], 'pit-10'),
      /not running on disk1 \(its bitmap became inconsistent/,
    );
    assert.deepEqual(await bed.cbt.listFrozen(), []);

    const enabled = await bed.cbt.enableTracking('disk0');
    assert.equal(enabled.fullSyncRequired, true);
    assert.deepEqual(await bitmapNames(bed.qmp, 'disk0'), [enabled.bitmap]);
    const enabled1 = await bed.cbt.enableTracking('disk1');
    assert.equal(enabled1.fullSyncRequired, true);
    assert.match(
      enabled1.warnings.join('\n'),
      /osr-\d+ on disk1 was unusable \(inconsistent after a crash\)/,
    );
    assert.deepEqual(await bitmapNames(bed.qmp, 'disk1'), [enabled1.bitmap]);
    await writeBlocks('disk0', [91], 0x91);
    const view = await bed.cbt.freeze(['disk0'], 'pit-10');
    assert.deepEqual(await dirtyBlocks(view), [{ offset: 91, length: 1 }]);
    await withView(view.disks[0], async (nbd) => {
      // A full sync reads the allocated extents, which include the write lost to the bitmap.
      assert.deepEqual(blocksOf(await allocatedExtents(nbd)).pop(), { offset: 90, length: 2 });
    });
    await bed.cbt.release('pit-10', { success: true });
  });

  it('says to pass the socket when the process already runs an NBD server', async () => {
    const own = new CbtConnector(bed.qmp, { workDir: path.join(bed.dir, 'work2') });
    await assert.rejects(own.freeze(['disk0'], 'pit-11'), /NBD server already runs.*nbdSocket/);
    assert.deepEqual(await own.listFrozen(), []);
  });

  it('starts its own NBD server when the process has none, and finds it again', async () => {
    for (const w of bed.writers.values()) await w.close();
    bed.writers.clear();
    await bed.qmp.execute('nbd-server-stop');
    // Stopping the server drops the exports served by it: the process has no NBD server left.
    assert.deepEqual(await bed.qmp.execute('query-block-exports'), []);
    const own = new CbtConnector(bed.qmp, { workDir: path.join(bed.dir, 'work2') });
    const view = await own.freeze(['disk1'], 'pit-12');
    assert.equal(view.disks[0]?.nbdSocket, path.join(bed.dir, 'work2', 'nbd.sock'));
    await withView(view.disks[0], async (nbd) => {
      assert.ok((await nbd.read(5 * BLOCK, BLOCK)).equals(Buffer.alloc(BLOCK, 0x55)));
    });
    await own.release('pit-12', { success: true });
    const again = new CbtConnector(bed.qmp, { workDir: path.join(bed.dir, 'work2') });
    const view2 = await again.freeze(['disk1'], 'pit-13');
    assert.equal(view2.disks[0]?.nbdSocket, path.join(bed.dir, 'work2', 'nbd.sock'));
    await again.release('pit-13', { success: true });
  });
});

async function bitmapNames(qmp: QmpClient, node: string): Promise<string[]> {
  const nodes = await qmp.execute<{ 'node-name': string; 'dirty-bitmaps'?: { name: string }[] }[]>(
    'query-named-block-nodes',
    { flat: true },
  );
  return (nodes.find((n) => n['node-name'] === node)?.['dirty-bitmaps'] ?? []).map((b) => b.name).sort();
}
