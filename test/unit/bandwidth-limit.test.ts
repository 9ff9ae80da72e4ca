// The parts of a policy's bandwidth limit that need no stack: the rate as an operator writes it,
// the policy's bounds, and the token bucket (no limit at 0; a new rate applies to waiting takes).
// The rate on the wire is proven in test/integration/bandwidth-limit.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenBucket } from '../../lib/net/token-bucket';
import { DEFAULT_POLICY, parseBandwidth, PolicyError, validatePolicy } from '../../shared/policy';

test('bandwidth limits are written as rates with their unit, or none', () => {
  assert.equal(parseBandwidth('50Mbit', '--bandwidth-limit'), 50e6);
  assert.equal(parseBandwidth('1.5Gbit', '--bandwidth-limit'), 1.5e9);
  assert.equal(parseBandwidth('800kbit/s', '--bandwidth-limit'), 800e3);
  assert.equal(parseBandwidth('none', '--bandwidth-limit'), 0);
  assert.throws(
    () => parseBandwidth('50MB', '--bandwidth-limit'),
    (err: Error) => {
      assert.ok(err instanceof PolicyError);
      assert.match(err.message, /--bandwidth-limit: "50MB" is not a rate; write e\.g\. 50Mbit/);
      return true;
    },
  );
});

test('a policy refuses a limit too low to send a segment, and keeps none as 0', () => {
  assert.throws(
    () => validatePolicy({ ...DEFAULT_POLICY, bandwidthLimitBitsPerSecond: 50_000 }),
    /bandwidthLimitBitsPerSecond: the bandwidth limit is 0 \(none\) or at least 100kbit/,
  );
  assert.equal(
    validatePolicy({ ...DEFAULT_POLICY, bandwidthLimitBitsPerSecond: 0 }).bandwidthLimitBitsPerSecond,
    0,
  );
  assert.equal(validatePolicy(DEFAULT_POLICY).bandwidthLimitBitsPerSecond, undefined);
});

test('a bucket at 0 lets everything through at once', async () => {
  const bucket = new TokenBucket(0);
  const start = performance.now();
  for (let i = 0; i < 100; i++) await bucket.take(100 * 1024 * 1024);
  assert.ok(performance.now() - start < 500);
});

test('a take waiting on a slow rate goes as soon as the rate is raised', async () => {
  const bucket = new TokenBucket(8_000); // 1000 bytes a second
  await bucket.take(10_000); // goes at once, 10 s of debt
  const waiting = bucket.take(1);
  const start = performance.now();
  bucket.setRate(8e9); // the debt is paid in microseconds at the new rate
  await waiting;
  // Without the change the take would wait 10 s; a sleep is at most 1 s before the rate is read again.
  assert.ok(performance.now() - start < 2_000, `waited ${performance.now() - start} ms`);
});
