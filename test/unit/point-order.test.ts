// The order of recovery points and the instant they carry (shared/point-order.ts), with the clock
// stories the fault suite found: a primary clock ahead or behind, then set right.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pointsToPrune } from '../../activities/cloud-applier/retention';
import {
  CLOCK_SKEW_ALERT_MS,
  monotonicInstants,
  orderPoints,
  placeInstant,
  pointAtOrBefore,
} from '../../shared/point-order';
import type { PointKind } from '../../shared/replication-types';

const T0 = Date.parse('2026-12-06T10:00:00.000Z');
const iso = (offsetS: number) => new Date(T0 + offsetS * 1000).toISOString();

interface P {
  id: string;
  cycle: number;
  instant: string;
  kind: PointKind;
  protection?: string;
  createdAt?: string;
}
/** A point: cycle, labelled `labelS` after T0, recorded by the recovery site `createdS` after T0. */
const point = (cycle: number, labelS: number, createdS: number, protection?: string): P => ({
  id: `c${cycle}${protection ? `-${protection.slice(-6)}` : ''}`,
  cycle,
  instant: iso(labelS),
  kind: 'crash',
  createdAt: iso(createdS),
  ...(protection ? { protection } : {}),
});

test('points cut before point-order order by when the recovery site recorded them, not their label', () => {
  // c2 and c3 were cut on a primary clock 90 s ahead; c4 after it was set right.
  const points = [point(4, 36, 37), point(2, 110, 21), point(1, 0, 1), point(3, 120, 31)];
  assert.deepEqual(
    orderPoints(points).map((p) => p.id),
    ['c1', 'c2', 'c3', 'c4'],
  );
});

test('new points order by protection then cycle, after every older point, whatever their instants', () => {
  const first = iso(-3600);
  const second = iso(600);
  const points = [
    point(2, 700, 701, second), // a later protection of the same name starts over at cycle 1
    point(9, 500, 501, first),
    point(1, 650, 651, second),
    point(10, 400, 601, first), // labelled earlier than c9 (a clock set back): still after it
    point(3, 9999, 300), // cut before point-order: first, however far ahead its label
  ];
  assert.deepEqual(
    orderPoints(points).map((p) => `${p.protection === second ? 'b' : p.protection ? 'a' : '-'}${p.cycle}`),
    ['-3', 'a9', 'a10', 'b1', 'b2'],
  );
});

test('instants along the order never go backwards; "at or before" reads them', () => {
  const ordered = orderPoints([point(1, 0, 1), point(2, 110, 11), point(3, 30, 31)]);
  assert.deepEqual(
    monotonicInstants(ordered).map((ms) => (ms - T0) / 1000),
    [0, 30, 30],
  );
  // c2's label (110 s) was 90 s ahead: it is not picked for a time before c3's.
  assert.equal(pointAtOrBefore(ordered, T0 + 20_000)?.id, 'c1');
  assert.equal(pointAtOrBefore(ordered, T0 + 30_000)?.id, 'c3');
  assert.equal(pointAtOrBefore(ordered, T0 - 1), undefined);
});

test("an instant is the primary's reading when Temporal's window holds it, else Temporal's time after", () => {
  const before = T0;
  const after = T0 + 2000;
  assert.deepEqual(placeInstant(iso(1), before, after), { instant: iso(1), skewMs: 0 });
  assert.deepEqual(placeInstant(iso(91), before, after), { instant: iso(2), skewMs: 89_000 });
  assert.deepEqual(placeInstant(iso(-120), before, after), { instant: iso(2), skewMs: -120_000 });
  // Slightly off: labelled by Temporal, no alert-worthy skew.
  const slight = placeInstant(iso(2.5), before, after);
  assert.equal(slight.instant, iso(2));
  assert.ok(Math.abs(slight.skewMs) < CLOCK_SKEW_ALERT_MS);
});

test('retention never drops the last point in order, even when an older one is labelled later', () => {
  const protection = iso(-7200);
  // c5 was cut on a clock 2 h ahead before the points carried a protection; c6 and c7 after.
  const points = [
    point(5, 7200, -3000),
    point(6, -3590, -3590, protection),
    point(7, -3000, -3000, protection),
  ];
  const dropped = pointsToPrune(points, { keepAllMinutes: 0, retentionHours: 0.5 }, new Date(T0));
  assert.deepEqual(
    dropped.map((p) => p.id),
    ['c5', points[1]?.id],
  );
});
