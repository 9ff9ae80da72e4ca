// The CBT connector against a real qemu-storage-daemon when its caller crashes in the middle of a
// freeze: before the point's moment the freeze starts over, after it (the writers are on the
// fleecing filter) the same id completes the point as it was at that moment.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CbtConnector, dirtyExtents } from '../../lib/qemu/cbt-connector';
import type { Extent, FrozenDisk, FrozenView } from '../../lib/qemu/cbt-connector';
import type { NbdClient } from '../../lib/qemu/nbd-client';
import type { QmpClient } from '../../lib/qemu/qmp-client';
import { CbtDaemonBed } from '../helpers/cbt-daemon';

const BLOCK = 64 * 1024;

describe('CbtConnector freezes interrupted by a crash of the caller', () => {
  const bed = new CbtDaemonBed(64 * 1024 * 1024);
  const writeBlocks = async (node: string, blocks: number[], byte: number): Promise<void> => {
    const w = bed.writers.get(node);
    assert.ok(w, `no writer for ${node}`);
    for (const b of blocks) await w.write(b * BLOCK, Buffer.alloc(BLOCK, byte));
    await w.flush();
  };
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
  const dirtyBlocks = (view: FrozenView): Promise<Extent[]> =>
    withView(view.disks[0], async (nbd) =>
      (await dirtyExtents(nbd, view.disks[0] as FrozenDisk)).map((e) => ({
        offset: e.offset / BLOCK,
        length: e.length / BLOCK,
      })),
    );

  it('tracks disk0', async () => {
    assert.equal((await bed.cbt.enableTracking('disk0')).bitmap, 'osr-1');
  });

  it('completes a freeze that was interrupted before its transaction', async () => {
    // A QMP connection that dies at the transaction, as if the caller crashed right there.
    let dead = false;
    const dying = {
      execute: (command: string, args?: Record<string, unknown>) => {
        // The first transaction starts the next bitmap, before the writers move onto the filter.
        if (command === 'transaction') dead = true;
        return dead ? Promise.reject(new Error('caller crashed')) : bed.qmp.execute(command, args);
      },
    } as unknown as QmpClient;
    const doomed = new CbtConnector(dying, {
      workDir: path.join(bed.dir, 'work'),
      nbdSocket: bed.daemon.nbdSocket,
    });
    await writeBlocks('disk0', [80], 0x80);
    await assert.rejects(doomed.freeze(['disk0'], 'pit-9'), /caller crashed/);
    assert.deepEqual(await bed.cbt.listFrozen(), ['pit-9'], 'the interrupted freeze left its manifest');

    const view = await bed.cbt.freeze(['disk0'], 'pit-9');
    assert.deepEqual(await dirtyBlocks(view), [{ offset: 80, length: 1 }]);
    await withView(view.disks[0], async (nbd) => {
      assert.ok((await nbd.read(80 * BLOCK, BLOCK)).equals(Buffer.alloc(BLOCK, 0x80)));
    });
    await bed.cbt.release('pit-9', { success: true });
    assert.deepEqual(await fs.promises.readdir(path.join(bed.dir, 'work')), []);
  });

  it('completes a freeze interrupted after its moment (writers on the filter) under the same id', async () => {
    // Dies at the second transaction: the writers are on the filter, the frozen bitmap still records.
    let transactions = 0;
    const dying = {
      execute: (command: string, args?: Record<string, unknown>) => {
        if (command === 'transaction') transactions += 1;
        return transactions >= 2
          ? Promise.reject(new Error('caller crashed'))
          : bed.qmp.execute(command, args);
      },
    } as unknown as QmpClient;
    const doomed = new CbtConnector(dying, {
      workDir: path.join(bed.dir, 'work'),
      nbdSocket: bed.daemon.nbdSocket,
    });
    await writeBlocks('disk0', [85], 0x85);
    await assert.rejects(doomed.freeze(['disk0'], 'pit-9b'), /caller crashed/);
    await writeBlocks('disk0', [86], 0x86); // after the moment: copied aside, in both bitmaps

    const view = await bed.cbt.freeze(['disk0'], 'pit-9b');
    assert.deepEqual(await dirtyBlocks(view), [{ offset: 85, length: 2 }]);
    await withView(view.disks[0], async (nbd) => {
      assert.ok((await nbd.read(85 * BLOCK, BLOCK)).equals(Buffer.alloc(BLOCK, 0x85)));
      assert.ok(
        (await nbd.read(86 * BLOCK, BLOCK)).equals(Buffer.alloc(BLOCK)),
        'the view is as at its moment',
      );
    });
    await bed.cbt.release('pit-9b', { success: true });
    const next = await bed.cbt.freeze(['disk0'], 'pit-9c');
    assert.deepEqual(
      await dirtyBlocks(next),
      [{ offset: 86, length: 1 }],
      'the later write goes with the next point',
    );
    await bed.cbt.release('pit-9c', { success: true });
  });
});
