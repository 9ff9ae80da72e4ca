// The parts of a site's bandwidth limit that need no stack: the bounds of the limit, and each
// process server's share (the site's limit over its live process servers, from their heartbeats).
// The rate on the wire: test/integration/site-bandwidth-limit.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BandwidthLimits } from '../../activities/process-server/bandwidth';
import { readSiteShare } from '../../activities/process-server/site-share';
import type { ServerHeartbeat } from '../../lib/observability/server-health';
import { PolicyError } from '../../shared/policy';
import { checkSiteLimit, type SiteSettings } from '../../shared/site-settings';

const health = { heartbeatSeconds: 15, staleSeconds: 60 } as const;
const config = { site: 'east', health } as Parameters<typeof readSiteShare>[1];

/** A vault holding the site's settings and heartbeats aged as given (seconds). */
function vaultWith(
  limit: number | undefined,
  servers: Array<[role: string, site: string, ageSeconds: number]>,
) {
  const docs = servers.map(([role, site, ageSeconds], i) => ({
    value: { id: `${role}-h-${i}`, role, site, at: new Date().toISOString() } as ServerHeartbeat,
    ageSeconds,
  }));
  return {
    read: async <T>(name: string) =>
      name === 'sites/east.json' && limit !== undefined
        ? { value: { site: 'east', bandwidthLimitBitsPerSecond: limit } as SiteSettings as T, etag: '' }
        : undefined,
    listAged: async <T>(prefix: string) =>
      prefix === 'servers/' ? (docs as Array<{ value: T; ageSeconds?: number }>) : [],
  };
}

test("each process server takes the site's limit over the site's live process servers", async () => {
  const share = await readSiteShare(
    vaultWith(90e6, [
      ['process-server', 'east', 3],
      ['process-server', 'east', 10],
      ['process-server', 'east', 59],
      ['process-server', 'east', 61], // stale: dead or gone, its share goes to the others
      ['process-server', 'west', 1], // another site's
      ['cloud-applier', 'east', 1], // not a process server
    ]),
    config,
  );
  assert.deepEqual(share, { siteBitsPerSecond: 90e6, servers: 3, bitsPerSecond: 30e6 });
});

test('a process server before its first heartbeat takes the whole limit; no limit is none', async () => {
  assert.deepEqual(await readSiteShare(vaultWith(50e6, []), config), {
    siteBitsPerSecond: 50e6,
    servers: 1,
    bitsPerSecond: 50e6,
  });
  for (const limit of [undefined, 0])
    assert.equal(
      (await readSiteShare(vaultWith(limit, [['process-server', 'east', 1]]), config)).bitsPerSecond,
      0,
    );
});

test('a site limit is none or at least 100kbit, in whole bits', () => {
  assert.equal(checkSiteLimit(0), 0);
  assert.equal(checkSiteLimit(100_000), 100_000);
  for (const bad of [50_000, 1.5e6 + 0.5, -1])
    assert.throws(
      () => checkSiteLimit(bad),
      (err: Error) => err instanceof PolicyError && /none \(0\) or at least 100kbit/.test(err.message),
    );
});

test("uploads waiting on the site's bucket go once the site limit is lifted, the policy's still applies", async () => {
  const vault = {
    machine: async () => ({ policy: 'p' }) as never,
    policy: async () => ({ bandwidthLimitBitsPerSecond: 0 }) as never,
  };
  let site = 8_000; // 1000 bytes a second
  const limits = new BandwidthLimits(vault, async () => site, 0);
  await limits.take('m1', 10_000); // goes at once, 10 s of debt
  const waiting = limits.take('m1', 1);
  const start = performance.now();
  site = 0;
  await limits.take('m1', 1); // reads the lifted limit, sets the site's bucket to none
  await waiting;
  // Without the change the waiting take would wait 10 s; a sleep is at most 1 s before the rate is read again.
  assert.ok(performance.now() - start < 5000, `waited ${Math.round(performance.now() - start)} ms`);
});
