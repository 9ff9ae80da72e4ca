import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planSegments } from '../../lib/segments/extent-plan';
import { coalesceExtents as coalesce } from '../../lib/qemu/cbt-connector';

const MiB = 1024 * 1024;

test('extents are merged when they touch or overlap, and sorted', () => {
  assert.deepEqual(
    coalesce([
      { offset: 8192, length: 4096 },
      { offset: 0, length: 4096 },
      { offset: 4096, length: 4096 },
      { offset: 10000, length: 0 },
      { offset: 65536, length: 512 },
    ]),
    [
      { offset: 0, length: 12288 },
      { offset: 65536, length: 512 },
    ],
  );
});

test('segments cover every byte once, in order, at most 4 MiB each', () => {
  const extents = [
    { offset: 0, length: 3 * MiB },
    { offset: 10 * MiB, length: 6 * MiB },
    { offset: 100 * MiB, length: 65536 },
  ];
  const plans = planSegments(extents);
  assert.deepEqual(
    plans.map((p) => p.rawBytes),
    [4 * MiB, 4 * MiB, 1 * MiB + 65536],
  );
  assert.deepEqual(plans[0]?.extents, [
    { offset: 0, length: 3 * MiB },
    { offset: 10 * MiB, length: 1 * MiB },
  ]);
  const covered = plans.flatMap((p) => p.extents).reduce((a, e) => a + e.length, 0);
  assert.equal(covered, 9 * MiB + 65536);
  assert.deepEqual(
    plans.map((p) => p.index),
    [0, 1, 2],
  );
});

test('the same extents always give the same plan (resumed transfers write the same names)', () => {
  const extents = Array.from({ length: 300 }, (_, i) => ({
    offset: i * 3 * 65536,
    length: 65536 * ((i % 3) + 1),
  }));
  assert.deepEqual(planSegments(extents), planSegments([...extents].reverse()));
});

test('no extents, no segments', () => {
  assert.deepEqual(planSegments([]), []);
});
