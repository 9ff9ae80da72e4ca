// CI's seeded part of a slow suite: a rotation, so consecutive seeds cover every scenario.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededSubset } from '../helpers/seeded';

test('under CI a seeded subset rotates over every item; without CI all items run', () => {
  const items = ['a', 'b', 'c', 'd', 'e'];
  const before = process.env.CI;
  try {
    process.env.CI = 'true';
    const seen = new Set<string>();
    for (let seed = 40; seed < 43; seed += 1) {
      const part = seededSubset(items, 2, seed);
      assert.equal(part.length, 2);
      assert.equal(new Set(part).size, 2, `no item twice in ${part.join(',')}`);
      part.forEach((i) => seen.add(i));
    }
    assert.deepEqual([...seen].sort(), items);
    assert.deepEqual(seededSubset(items, 2, 7), seededSubset(items, 2, 7), 'a seed replays its pick');
    delete process.env.CI;
    assert.deepEqual(seededSubset(items, 2, 7), items);
  } finally {
    if (before === undefined) delete process.env.CI;
    else process.env.CI = before;
  }
});
