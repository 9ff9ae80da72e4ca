// The process server's state-disk watch (lib/observability/state-disk.ts) over a stand-in for
// statfs: the alert comes with low space or a given-up point, keeps its id while the episode
// lasts, gets a new one when a point is given up, and clears once space is back and a point kept.
import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';
import { StateDiskWatch, noteGivenUpPoint, noteKeptPoint } from '../../lib/observability/state-disk';

const MiB = 1024 * 1024;

test('state-disk-full: low space warns, a given-up point is critical, both clear when resolved', () => {
  let free = 50 * MiB;
  const watch = new StateDiskWatch(os.tmpdir(), 0.1, 'process-server worker on h (pid 1)', () => ({
    freeBytes: free,
    sizeBytes: 100 * MiB,
  }));
  assert.deepEqual(watch.update(1000), [], 'half free: no alert');

  free = 5 * MiB;
  const [low] = watch.update(2000);
  assert.equal(low?.kind, 'state-disk-full');
  assert.equal(low?.severity, 'warning');
  assert.equal(low?.id, 'state-disk-full-2000');
  assert.match(low?.message ?? '', /has 5 MiB free of 100 MiB \(alert under 10 %\).*Fix: free space/);
  assert.equal(watch.update(3000)[0]?.id, 'state-disk-full-2000', 'one id while it lasts');

  noteGivenUpPoint('web', 'pit-7', 'no room', 3500);
  const [given] = watch.update(4000);
  assert.equal(given?.severity, 'critical');
  assert.equal(given?.id, 'state-disk-full-2000-3500', 'a given-up point is news: a new id');
  assert.match(given?.message ?? '', /points given up for lack of room.*web \(point pit-7/);

  free = 60 * MiB;
  assert.equal(watch.update(5000)[0]?.severity, 'critical', 'room again, but no point kept since');
  noteKeptPoint('web');
  assert.deepEqual(watch.update(6000), [], 'room and a kept point: cleared');
  free = 1 * MiB;
  assert.equal(watch.update(7000)[0]?.id, 'state-disk-full-7000', 'the next episode is new');
});
