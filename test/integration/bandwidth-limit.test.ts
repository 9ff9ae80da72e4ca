// Bandwidth limits (issue 16), per policy and per site: the process server's segment uploads,
// counted at a proxy in front of Azurite (not from the product's own figures), go at the limit
// within 10 %, and a limit changed while the initial sync runs takes over within seconds, without
// restarting anything. A policy's limit changed (`osr policy update --bandwidth-limit`); a site's
// limit below the policy's (the stricter applies) lifted (`osr site limit none`), handing over to
// the policy's. One process server: its share is the whole site limit.
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { createPolicy, updatePolicy } from '../../operations/policies';
import { getSite, setSiteBandwidthLimit } from '../../operations/sites';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const MiB = 1024 * 1024;
const LOW = 16e6; // bits per second: 2 MB/s, far below what the machine can upload
const HIGH = 32e6;
/** Segments sent under the first limit before it is changed. */
const SEGMENTS_BEFORE_CHANGE = 6;
/** After a change: the process server reads policy and site every 2 s, a waiting upload sleeps ≤ 1 s. */
const SETTLE_MS = 3500;
let stack: TestStack;
let ctx: ControlContext;
let proxy: FaultProxy;
const vms: TestMachine[] = [];

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
});

after(async () => {
  for (const vm of vms) await vm.stop();
  await ctx?.close();
  await stack?.stop();
  await proxy?.close();
});

const segments = (machine: string) => {
  const put = new RegExp(`/osr-cache/${machine}/disk0/\\d+/\\d+\\.seg`);
  return proxy.bodies.filter((b) => b.method === 'PUT' && put.test(b.url));
};

/**
 * Bytes per second of the uploads that started within [from, to): the bytes of all but the last,
 * over the time from the first start to the last (a token bucket lets each upload go once the
 * previous ones are paid for, so this is its rate, whatever the size of the uploads).
 */
function rateBetween(machine: string, from: number, to: number): { bitsPerSecond: number; uploads: number } {
  const inside = segments(machine).filter((s) => s.at >= from && s.at < to);
  assert.ok(
    inside.length >= 4,
    `only ${inside.length} segment uploads between the marks; cannot measure a rate`,
  );
  const first = inside[0] as (typeof inside)[number];
  const last = inside[inside.length - 1] as (typeof inside)[number];
  const bytes = inside.slice(0, -1).reduce((a, s) => a + s.bytes, 0);
  return { bitsPerSecond: (bytes * 8) / ((last.at - first.at) / 1000), uploads: inside.length };
}

const mbit = (b: number) => `${(b / 1e6).toFixed(1)} Mbit/s`;

/**
 * Protects a machine of 80 MiB of random data (segments stay about 4 MiB: zstd gains nothing, so
 * each is one large upload) under `policy`, calls `change` after a few segments, and measures the
 * upload rate before the change and after it settled; checks `expected` for both within 10 %.
 */
async function syncAcrossChange(
  t: TestContext,
  name: string,
  policy: string,
  change: () => Promise<void>,
  expected: { before: number; after: number },
): Promise<void> {
  const vm = await startTestMachine({ sizes: [96 * MiB] });
  vms.push(vm);
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(80 * MiB, 7));
  await disk.flush();
  await machines.protect(ctx, {
    name,
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy,
  });
  const deadline = Date.now() + 5 * 60_000;
  while (segments(name).length < SEGMENTS_BEFORE_CHANGE) {
    assert.ok(Date.now() < deadline, `only ${segments(name).length} segments uploaded in 5 minutes`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const changedAt = performance.now();
  await change();
  await waitForStatus(ctx, name, (s) => s.state === 'protected' && s.lastPoint !== undefined, 5 * 60_000);

  const measured = {
    before: rateBetween(name, 0, changedAt),
    after: rateBetween(name, changedAt + SETTLE_MS, Infinity),
  };
  for (const when of ['before', 'after'] as const) {
    const { bitsPerSecond, uploads } = measured[when];
    t.diagnostic(
      `${when} the change, limit ${mbit(expected[when])}: ${mbit(bitsPerSecond)} over ${uploads} uploads`,
    );
    assert.ok(
      Math.abs(bitsPerSecond - expected[when]) <= 0.1 * expected[when],
      `${when} the change (limit ${mbit(expected[when])}) ${uploads} uploads went at ${mbit(bitsPerSecond)}`,
    );
  }
  // The whole disk went through the proxy (random data: a segment is its blocks plus a header).
  const sent = segments(name).reduce((a, s) => a + s.bytes, 0);
  assert.ok(sent >= 80 * MiB, `the proxy saw ${sent} bytes of segments for 80 MiB of data`);
}

const policy = (name: string, limit: number) =>
  createPolicy(ctx, {
    name,
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
    bandwidthLimitBitsPerSecond: limit,
  });

test(
  'segment uploads keep to the policy limit, and to a new one set while they run',
  { timeout: 10 * 60_000 },
  async (t) => {
    await policy('limited', LOW);
    await syncAcrossChange(
      t,
      'bw1',
      'limited',
      async () => void (await updatePolicy(ctx, 'limited', { bandwidthLimitBitsPerSecond: HIGH })),
      { before: LOW, after: HIGH },
    );
  },
);

test(
  "segment uploads keep to the site's limit below the policy's, and to the policy's once the site's is lifted while they run",
  { timeout: 10 * 60_000 },
  async (t) => {
    await policy('sitecapped', HIGH);
    await setSiteBandwidthLimit(ctx, stack.config.site, LOW);
    // The premise: one live process server in the site, so its share is the whole limit.
    assert.equal((await getSite(ctx, stack.config.site)).liveProcessServers, 1);
    await syncAcrossChange(
      t,
      'sbw1',
      'sitecapped',
      async () => {
        const lifted = await setSiteBandwidthLimit(ctx, stack.config.site, 0);
        assert.equal(lifted.bandwidthLimitBitsPerSecond, 0);
      },
      { before: LOW, after: HIGH },
    );
  },
);
