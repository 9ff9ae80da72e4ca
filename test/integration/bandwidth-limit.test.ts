// A policy's bandwidth limit (issue 16): the process server's segment uploads, counted at a proxy in
// front of Azurite (not from the product's own figures), go at the policy's limit within 10 %, and a
// limit changed while the initial sync runs (`osr policy update --bandwidth-limit`) takes over
// within seconds, without restarting anything.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { createPolicy, updatePolicy } from '../../operations/policies';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const MiB = 1024 * 1024;
const FIRST_LIMIT = 16e6; // bits per second: 2 MB/s, far below what the machine can upload
const SECOND_LIMIT = 32e6;
/** Segments sent under the first limit before it is changed. */
const SEGMENTS_BEFORE_CHANGE = 6;
/** After the change: the process server reads the policy every 2 s, a waiting upload sleeps ≤ 1 s. */
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
    bandwidthLimitBitsPerSecond: FIRST_LIMIT,
  });
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

const segmentPut = /\/osr-cache\/bw1\/disk0\/\d+\/\d+\.seg/;
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
  'segment uploads keep to the policy limit, and to a new one set while they run',
  { timeout: 10 * 60_000 },
  async (t) => {
    await machines.protect(ctx, {
      name: 'bw1',
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
    await updatePolicy(ctx, 'limited', { bandwidthLimitBitsPerSecond: SECOND_LIMIT });
    await waitForStatus(ctx, 'bw1', (s) => s.state === 'protected' && s.lastPoint !== undefined, 5 * 60_000);

    const before = rateBetween(0, changedAt);
    const afterChange = rateBetween(changedAt + SETTLE_MS, Infinity);
    const mbit = (b: number) => `${(b / 1e6).toFixed(1)} Mbit/s`;
    t.diagnostic(
      `first limit ${mbit(FIRST_LIMIT)}: ${mbit(before.bitsPerSecond)} over ${before.uploads} uploads`,
    );
    t.diagnostic(
      `second limit ${mbit(SECOND_LIMIT)}: ${mbit(afterChange.bitsPerSecond)} over ${afterChange.uploads} uploads`,
    );
    assert.ok(
      within(before.bitsPerSecond, FIRST_LIMIT),
      `under the first limit (${mbit(FIRST_LIMIT)}) ${before.uploads} uploads went at ${mbit(before.bitsPerSecond)}`,
    );
    assert.ok(
      within(afterChange.bitsPerSecond, SECOND_LIMIT),
      `after the change to ${mbit(SECOND_LIMIT)} ${afterChange.uploads} uploads went at ${mbit(afterChange.bitsPerSecond)}`,
    );
    // The whole disk went through the proxy (random data: a segment is its blocks plus a header).
    const sent = segments().reduce((a, s) => a + s.bytes, 0);
    assert.ok(sent >= 80 * MiB, `the proxy saw ${sent} bytes of segments for 80 MiB of data`);
  },
);
