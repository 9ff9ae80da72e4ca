// The agent's point-store report (agent/tracking/store-space.ts) over a stand-in for statfs, and
// how OSR judges it (lib/agents/store-alerts.ts): the threshold (the floor, shrunk on a small
// filesystem, or room for several points as large as the largest recent one), the low alert with
// its free bytes, threshold and fix, its id kept while the episode lasts, the overflow alert until
// a point is kept, and reports an agent could send malformed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { RECENT_POINTS, StoreSpace } from '../../agent/tracking/store-space';
import type { StoreReport } from '../../agent/protocol';
import {
  checkStoreReport,
  DEFAULT_STORE_ALERT,
  recordStore,
  storeAlerts,
  storeKey,
  storeLow,
  storeThreshold,
} from '../../lib/agents/store-alerts';
import { loadConfig } from '../../lib/config/config';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const S = DEFAULT_STORE_ALERT;
const report = (r: Partial<StoreReport>): StoreReport => ({
  dir: '/var/lib/osr-agent',
  freeBytes: 0,
  sizeBytes: 100 * GiB,
  ...r,
});
const agent = { id: 'ag-0123456789ab', hostname: 'web-1' };

test('the configuration defaults are the judge’s defaults, and can be set', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-config-'));
  const { agents } = loadConfig({ env: {}, cwd });
  assert.equal(agents.storeFreeAlertBytes, S.storeFreeAlertBytes);
  assert.equal(agents.storeFreeAlertPoints, S.storeFreeAlertPoints);
  const set = loadConfig({
    env: { OSR_AGENT_STORE_ALERT_BYTES: String(64 * MiB), OSR_AGENT_STORE_ALERT_POINTS: '2' },
    cwd,
  }).agents;
  assert.deepEqual([set.storeFreeAlertBytes, set.storeFreeAlertPoints], [64 * MiB, 2]);
});

test('threshold: the floor on a large filesystem, a tenth of a small one, or room for 4 of the largest points', () => {
  assert.equal(storeThreshold(report({}), S), GiB, '100 GiB filesystem: the 1 GiB floor');
  assert.equal(
    storeThreshold(report({ sizeBytes: 512 * MiB }), S),
    Math.round(51.2 * MiB),
    'a tenth of 512 MiB',
  );
  assert.equal(storeThreshold(report({ largestPointBytes: 2 * GiB }), S), 8 * GiB, '4 × a 2 GiB point');
  assert.equal(
    storeThreshold(report({ sizeBytes: 512 * MiB, largestPointBytes: 30 * MiB }), S),
    120 * MiB,
    'the points count even on a small filesystem',
  );
  assert.equal(storeLow(report({ freeBytes: GiB - 1 }), S), true);
  assert.equal(storeLow(report({ freeBytes: GiB }), S), false, 'at the threshold: not low');
  assert.equal(storeLow(report({ sizeBytes: 0, freeBytes: 0 }), S), false, 'unknown size (ramfs): never low');
  assert.equal(storeLow(report({ freeBytes: 5 * GiB }), { ...S, storeFreeAlertPoints: 0 }), false);
});

test('agent-store-low: the free bytes, the threshold and the fix; one id while it lasts; cleared with room', () => {
  const low = report({ freeBytes: 6 * MiB, sizeBytes: 512 * MiB, largestPointBytes: 3 * MiB });
  const first = recordStore(undefined, low, S, new Date(2000));
  assert.equal(first.lowSince, new Date(2000).toISOString());
  const [alert, ...more] = storeAlerts(agent, first, S);
  assert.deepEqual(more, []);
  assert.equal(alert?.kind, 'agent-store-low');
  assert.equal(alert?.severity, 'warning');
  assert.equal(alert?.id, 'agent-store-low-2000');
  assert.match(
    alert?.message ?? '',
    /^agent ag-0123456789ab on web-1: the filesystem holding \/var\/lib\/osr-agent has 6\.0 MiB free of 512\.0 MiB \(6291456 bytes at .*; alert under 51\.2 MiB: 1024\.0 MiB or 10 % of the filesystem, whichever is less, or 4× the largest recent point store \(3\.0 MiB\)\)\..*Fix: free space on the filesystem holding \/var\/lib\/osr-agent on web-1, or grow it\.$/,
  );
  const later = recordStore(first, { ...low, freeBytes: 5 * MiB }, S, new Date(9000));
  assert.equal(storeAlerts(agent, later, S)[0]?.id, 'agent-store-low-2000', 'same episode, same id');
  const freed = recordStore(later, { ...low, freeBytes: 400 * MiB }, S, new Date(10_000));
  assert.equal(freed.lowSince, undefined);
  assert.deepEqual(storeAlerts(agent, freed, S), [], 'room again: cleared');
  const again = recordStore(freed, low, S, new Date(20_000));
  assert.equal(storeAlerts(agent, again, S)[0]?.id, 'agent-store-low-20000', 'the next episode is new');
  assert.deepEqual(storeAlerts(agent, undefined, S), [], 'an older agent reports nothing');
  // The listener writes at once what changes the alert: low, and while low a fall by an eighth.
  const key = (free: number) => storeKey({ ...low, freeBytes: free * MiB }, S);
  assert.equal(key(400), key(300), 'room either way: no write before the minute');
  assert.notEqual(key(400), key(45));
  assert.notEqual(key(45), key(6), 'filling further while low');
  assert.equal(key(6), key(5.5));
});

test('agent-store-full: critical with the count and the agent’s own message, until a point is kept', () => {
  let free = 0;
  const space = new StoreSpace(
    () => '/var/lib/osr-agent',
    () => ({ bavail: free / 4096, blocks: (512 * MiB) / 4096, bsize: 4096 }),
  );
  space.notePointUse(2 * MiB);
  space.noteOverflow('the snapshot of vda for point web-c7 was invalidated', new Date(5000));
  space.noteOverflow('the snapshot of vda for point web-c7 was invalidated', new Date(5100));
  space.noteOverflow('the snapshot of vda for point web-c8 was invalidated', new Date(6000));
  const sent = space.report();
  assert.deepEqual(sent, {
    dir: '/var/lib/osr-agent',
    freeBytes: 0,
    sizeBytes: 512 * MiB,
    largestPointBytes: 2 * MiB,
    overflow: {
      since: new Date(5000).toISOString(),
      at: new Date(6000).toISOString(),
      count: 2,
      message: 'the snapshot of vda for point web-c8 was invalidated',
    },
  });
  const recorded = recordStore(undefined, checkStoreReport(sent) as StoreReport, S, new Date(6500));
  const alerts = storeAlerts(agent, recorded, S);
  assert.deepEqual(
    alerts.map((a) => [a.kind, a.severity, a.id]),
    [
      ['agent-store-full', 'critical', 'agent-store-full-5000'],
      ['agent-store-low', 'warning', 'agent-store-low-6500'],
    ],
  );
  assert.equal(alerts[0]?.count, 2);
  assert.match(
    alerts[0]?.message ?? '',
    /2 point\(s\) given up since .* because the filesystem holding \/var\/lib\/osr-agent is full .*web-c8 was invalidated\)\. Fix: free space .*; the alert clears when a point is kept\.$/,
  );
  free = 300 * MiB;
  space.noteKeptPoint();
  const after = space.report() as StoreReport;
  assert.equal(after.overflow, undefined);
  assert.deepEqual(storeAlerts(agent, recordStore(recorded, after, S), S), [], 'room and a kept point');
  assert.notEqual(
    storeKey(sent as StoreReport, S),
    storeKey(after, S),
    'the listener writes the change at once',
  );
});

test('the largest of the recent points counts; a folder not made yet reports its parent, an unreadable one nothing', () => {
  const space = new StoreSpace(
    () => '/x',
    () => ({ bavail: 1, blocks: 1, bsize: 1 }),
  );
  space.notePointUse(50 * MiB);
  for (let i = 0; i < RECENT_POINTS; i++) space.notePointUse(MiB);
  assert.equal(space.report()?.largestPointBytes, MiB, 'a big point long ago no longer counts');
  const asked: string[] = [];
  const later = new StoreSpace(
    () => '/var/lib/osr-agent',
    (d) => {
      asked.push(d);
      if (d !== '/var') throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return { bavail: 10, blocks: 20, bsize: 4096 };
    },
  );
  assert.deepEqual(later.report(), { dir: '/var/lib/osr-agent', freeBytes: 40960, sizeBytes: 81920 });
  assert.deepEqual(
    asked,
    ['/var/lib/osr-agent', '/var/lib', '/var'],
    'not made yet: the filesystem that will hold it',
  );
  const unreadable = new StoreSpace(
    () => '/x',
    () => {
      throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
    },
  );
  assert.equal(unreadable.report(), undefined);
});

test('malformed reports are not recorded', () => {
  const good = report({ freeBytes: 1 });
  assert.deepEqual(checkStoreReport(good), good);
  assert.equal(checkStoreReport(undefined), undefined);
  assert.equal(checkStoreReport({ ...good, freeBytes: -1 }), undefined);
  assert.equal(checkStoreReport({ ...good, sizeBytes: 'big' }), undefined);
  assert.equal(checkStoreReport({ ...good, dir: 'x'.repeat(5000) }), undefined);
  assert.equal(checkStoreReport({ ...good, overflow: { since: 1 } }), undefined);
  assert.deepEqual(checkStoreReport({ ...good, extra: 'dropped' }), good);
});

test('the connection is woken at a point given up and at the first kept after, not at every point', async () => {
  const space = new StoreSpace(
    () => '/x',
    () => ({ bavail: 1, blocks: 1, bsize: 1 }),
  );
  const woken = (p: Promise<void>): Promise<boolean> =>
    Promise.race([p.then(() => true), new Promise<boolean>((r) => setImmediate(() => r(false)))]);
  const first = space.changed();
  assert.equal(space.changed(), first, 'one promise while nothing changed');
  space.noteKeptPoint();
  assert.equal(await woken(first), false, 'a kept point with no overflow is no news');
  space.noteOverflow('point p1 was invalidated');
  assert.equal(await woken(first), true);
  const second = space.changed();
  space.noteOverflow('point p1 was invalidated');
  assert.equal(await woken(second), false, 'another read of the same point: no news');
  space.noteKeptPoint();
  assert.equal(await woken(second), true, 'the episode ended');
});
