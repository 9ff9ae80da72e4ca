// A site's bandwidth limit (issue 16): with a site limit below the policy's, the process server's
// segment uploads, counted at a proxy in front of Azurite (not from the product's own figures), go
// at the site's limit within 10 % (the stricter applies); the site limit lifted while the initial
// sync runs (`osr site limit none`) hands over to the policy's limit within seconds, without
// restarting anything. One process server: its share is the whole site limit.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { createPolicy } from '../../operations/policies';
import { getSite, setSiteBandwidthLimit } from '../../operations/sites';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const MiB = 1024 * 1024;
const SITE_LIMIT = 16e6; // bits per second: 2 MB/s, far below what the machine can upload
const POLICY_LIMIT = 32e6;
/** Segments sent under the first limit before it is changed. */
const SEGMENTS_BEFORE_CHANGE = 6;
/** After the change: the process server reads the site every 2 s, a waiting upload sleeps ≤ 1 s. */
const SETTLE_MS = 3500;
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
let proxy: FaultProxy;

before(async () => {
  stack = await startTestStack();
  proxy = await startFaultProxy(stack.config.storage.azuritePort);
  await Promise.all([
    stack.startWorker('control'),
    stack.startWorker('cloud-applier'),
    // Only the process server goes through the proxy: what it counts is the limited traffic.
    stack.startWorker('process-server', { OSR_AZURITE_PORT: String(proxy.port) }),
  ]);
  ctx = new ControlContext(stack.config);
  await createPolicy(ctx, {
    name: 'limited',
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
    bandwidthLimitBitsPerSecond: POLICY_LIMIT,
  });
  await setSiteBandwidthLimit(ctx, stack.config.site, SITE_LIMIT);
  // Random data: segments stay about 4 MiB (zstd gains nothing), so each is one large upload.
  vm = await startTestMachine({ sizes: [96 * MiB] });
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(80 * MiB, 7));
  await disk.flush();
});

after(async () => {
  await vm?.stop();
  await ctx?.close();
  await stack?.stop();
  await proxy?.close();
});

const segmentPut = /\/osr-cache\/sbw1\/disk0\/\d+\/\d+\.seg/;
const segments = () => proxy.bodies.filter((b) => b.method === 'PUT' && segmentPut.test(b.url));

/**
 * Bytes per second of the uploads that started within [from, to): the bytes of all but the last,
 * over the time from the first start to the last (a token bucket lets each upload go once the
 * previous ones are paid for, so this is its rate, whatever the size of the uploads).
 */
function rateBetween(from: number, to: number): { bitsPerSecond: number; uploads: number } {
  const inside = segments().filter((s) => s.at >= from && s.at < to);
  assert.ok(
    inside.length >= 4,
    `only ${inside.length} segment uploads between the marks; cannot measure a rate`,
  );
  const first = inside[0] as (typeof inside)[number];
  const last = inside[inside.length - 1] as (typeof inside)[number];
  const bytes = inside.slice(0, -1).reduce((a, s) => a + s.bytes, 0);
  return { bitsPerSecond: (bytes * 8) / ((last.at - first.at) / 1000), uploads: inside.length };
}

const within = (measured: number, limit: number) => Math.abs(measured - limit) <= 0.1 * limit;

test(
  "segment uploads keep to the site's limit below the policy's, and to the policy's once the site's is lifted while they run",
  { timeout: 10 * 60_000 },
  async (t) => {
    await machines.protect(ctx, {
      name: 'sbw1',
      qmpSocket: vm.daemon.qmpSocket,
      nbdSocket: vm.daemon.nbdSocket,
      policy: 'limited',
    });
    const deadline = Date.now() + 5 * 60_000;
    while (segments().length < SEGMENTS_BEFORE_CHANGE) {
      assert.ok(Date.now() < deadline, `only ${segments().length} segments uploaded in 5 minutes`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const changedAt = performance.now();
    const lifted = await setSiteBandwidthLimit(ctx, stack.config.site, 0);
    assert.equal(lifted.bandwidthLimitBitsPerSecond, 0);
    await waitForStatus(ctx, 'sbw1', (s) => s.state === 'protected' && s.lastPoint !== undefined, 5 * 60_000);

    // The premise: one live process server in the site, so its share is the whole limit.
    assert.equal((await getSite(ctx, stack.config.site)).liveProcessServers, 1);
    const before = rateBetween(0, changedAt);
    const afterChange = rateBetween(changedAt + SETTLE_MS, Infinity);
    const mbit = (b: number) => `${(b / 1e6).toFixed(1)} Mbit/s`;
    t.diagnostic(
      `site limit ${mbit(SITE_LIMIT)} under policy ${mbit(POLICY_LIMIT)}: ${mbit(before.bitsPerSecond)} over ${before.uploads} uploads`,
    );
    t.diagnostic(
      `site limit lifted, policy ${mbit(POLICY_LIMIT)}: ${mbit(afterChange.bitsPerSecond)} over ${afterChange.uploads} uploads`,
    );
    assert.ok(
      within(before.bitsPerSecond, SITE_LIMIT),
      `under the site limit (${mbit(SITE_LIMIT)}, policy ${mbit(POLICY_LIMIT)}) ${before.uploads} uploads went at ${mbit(before.bitsPerSecond)}`,
    );
    assert.ok(
      within(afterChange.bitsPerSecond, POLICY_LIMIT),
      `with the site limit lifted (policy ${mbit(POLICY_LIMIT)}) ${afterChange.uploads} uploads went at ${mbit(afterChange.bitsPerSecond)}`,
    );
    // The whole disk went through the proxy (random data: a segment is its blocks plus a header).
    const sent = segments().reduce((a, s) => a + s.bytes, 0);
    assert.ok(sent >= 80 * MiB, `the proxy saw ${sent} bytes of segments for 80 MiB of data`);
  },
);
