// A worker's alerts about itself: memory and backlog pressure, one stable id per episode.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PressureTracker } from '../../workers/heartbeat';

const MiB = 1024 * 1024;
const calm = { rssBytes: 200 * MiB, heapUsedBytes: 50 * MiB, heapLimitBytes: 4096 * MiB };
const pipeline = (bytesInFlight: number, waiting = 0) => ({
  bytesInFlight,
  maxBytesInFlight: 64 * MiB,
  waiting,
});

test('memory pressure: over the RSS limit or 90% of the heap; one id while it lasts, a new one after it clears', () => {
  const t = new PressureTracker(
    { rssAlertBytes: 1024 * MiB, backlogAlertRatio: 0.9 },
    'process-server worker on h (pid 1)',
  );
  assert.deepEqual(t.update({ now: 1000, ...calm }), []);
  const [first] = t.update({ now: 2000, ...calm, rssBytes: 1500 * MiB });
  assert.equal(first?.kind, 'memory-pressure');
  assert.equal(first?.id, 'memory-pressure-2000');
  assert.equal(first?.at, new Date(2000).toISOString());
  assert.match(
    first?.message ?? '',
    /process-server worker on h \(pid 1\) uses 1500 MiB RSS .*alert above 1024 MiB RSS/,
  );
  assert.equal(
    t.update({ now: 3000, ...calm, rssBytes: 1600 * MiB })[0]?.id,
    'memory-pressure-2000',
    'same episode',
  );
  assert.deepEqual(t.update({ now: 4000, ...calm }), [], 'cleared');
  assert.equal(
    t.update({ now: 5000, ...calm, heapUsedBytes: 3900 * MiB })[0]?.id,
    'memory-pressure-5000',
    'heap',
  );
});

test('backlog pressure: the pipeline full, or callers waiting, two heartbeats running', () => {
  const t = new PressureTracker({ rssAlertBytes: 1024 * MiB, backlogAlertRatio: 0.9 }, 'w');
  assert.deepEqual(
    t.update({ now: 1, ...calm, pipeline: pipeline(60 * MiB) }),
    [],
    'one full heartbeat is a burst',
  );
  assert.deepEqual(t.update({ now: 2, ...calm, pipeline: pipeline(10 * MiB) }), [], 'and it drained');
  assert.deepEqual(t.update({ now: 3, ...calm, pipeline: pipeline(10 * MiB, 2) }), []);
  const [alert] = t.update({ now: 4, ...calm, pipeline: pipeline(58 * MiB) });
  assert.equal(alert?.kind, 'backlog-pressure');
  assert.equal(alert?.id, 'backlog-pressure-4');
  assert.match(alert?.message ?? '', /58 of 64 MiB in flight, 0 waiting/);
  assert.deepEqual(t.update({ now: 5, ...calm }), [], 'no pipeline (a control worker): no backlog');
});
