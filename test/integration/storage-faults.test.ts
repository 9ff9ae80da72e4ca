// Storage faults (issue 7): throttling (503 Server Busy / 500) and answers slower than the client's
// time-out, injected by a proxy in front of Azurite (loopback only) that both the process server and
// the cloud applier reach storage through. Each is retried with backoff, shows as an alert that
// names the storage problem, loses nothing (the next point's export equals the source), and the
// alert clears once a cycle went through without trouble. A long outage of the cache fills the
// process server's spool: intake pauses, nothing is dropped, and it resumes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { protectWorkflowId, type Alert } from '../../shared/contracts/protect-machine';
import { startFaultProxy, type FaultProxy, type FaultRule } from '../helpers/fault-proxy';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, textLike, type TestMachine } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { createManualPolicy } from '../helpers/testbed';

const MiB = 1024 * 1024;
const SPOOL_BYTES = 8 * MiB; // two 4 MiB segments
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
let proxy: FaultProxy;

const segmentUrl = /\/osr-cache\/sf1\/disk0\/\d+\/\d+\.seg/;
const pageWrite = /\/osr-replica\/sf1\/disk0\?comp=page/;

before(async () => {
  stack = await startTestStack();
  proxy = await startFaultProxy(stack.config.storage.azuritePort);
  // The data-path workers reach storage through the proxy, with a short per-try time-out and a
  // small spool so a test can fill it; the control worker and this test go straight to Azurite.
  const psConfig = path.join(stack.stateDir, 'ps-config.json');
  fs.writeFileSync(psConfig, JSON.stringify({ pipeline: { maxBytesInFlight: SPOOL_BYTES } }));
  const throughProxy = {
    OSR_AZURITE_PORT: String(proxy.port),
    OSR_STORAGE_TRY_TIMEOUT_SECONDS: '1.5',
    OSR_STORAGE_MAX_TRIES: '4',
  };
  await Promise.all([
    stack.startWorker('control'),
    stack.startWorker('cloud-applier', throughProxy),
    stack.startWorker('process-server', { ...throughProxy, OSR_CONFIG: psConfig }),
  ]);
  ctx = new ControlContext(stack.config);
  await createManualPolicy(ctx);
  vm = await startTestMachine({ sizes: [64 * MiB] });
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(8 * MiB, 1));
  await disk.write(40 * MiB, textLike(4 * MiB));
  await disk.flush();
  await machines.protect(ctx, {
    name: 'sf1',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(ctx, 'sf1', (s) => s.state === 'protected');
});

after(async () => {
  await vm?.stop();
  await ctx?.close();
  await stack?.stop();
  await proxy?.close();
});

function addRule(rule: FaultRule): () => void {
  proxy.rules.push(rule);
  return () => {
    const at = proxy.rules.indexOf(rule);
    if (at >= 0) proxy.rules.splice(at, 1);
  };
}

const storageAlerts = (alerts: Alert[]) =>
  alerts.filter((a) => a.kind === 'storage-throttled' || a.kind === 'storage-unreachable');

async function pointEqualsSource(id: string, what: string): Promise<void> {
  assertSameImage(await exportedImage(ctx, await pointById(ctx, 'sf1', id)), await vm.readAll(), what);
}

/** A cycle with nothing wrong: the storage alerts clear, and the point is the source. */
async function healthyCycleClears(what: string): Promise<void> {
  const brief = await machines.takePoint(ctx, 'sf1', { kind: 'crash' });
  const status = await machines.machineStatus(ctx, 'sf1');
  assert.deepEqual(storageAlerts(status.alerts), [], `${what}: storage alerts clear after a healthy cycle`);
  await pointEqualsSource(brief.id, `${what}: the point after storage recovered`);
}

function processServerLog(): string {
  const logs = path.join(stack.stateDir, 'logs');
  return fs
    .readdirSync(logs)
    .filter((f) => f.startsWith('process-server'))
    .map((f) => fs.readFileSync(path.join(logs, f), 'utf8'))
    .join('\n');
}

test('throttled answers (503 Server Busy, 500) are retried with backoff: an alert names them, no data is lost', async () => {
  const disk = await vm.disk();
  await disk.write(16 * MiB, pseudoRandom(12 * MiB, 2));
  await disk.write(44 * MiB, textLike(2 * MiB));
  await disk.flush();
  const hitsBefore = proxy.hits.length;
  const removeThrottle = addRule({
    match: (m, url) => m === 'PUT' && segmentUrl.test(url),
    action: 'throttle',
    times: Infinity,
    share: 0.5,
  });
  const removeErrors = addRule({
    match: (m, url) => m === 'PUT' && pageWrite.test(url),
    action: 'server-error',
    times: Infinity,
    share: 0.3,
  });
  let brief;
  try {
    brief = await machines.takePoint(ctx, 'sf1', { kind: 'crash' });
  } finally {
    removeThrottle();
    removeErrors();
  }
  const hits = proxy.hits.slice(hitsBefore);
  assert.ok(
    hits.some((h) => h.startsWith('throttle PUT')),
    'segment uploads were throttled',
  );
  assert.ok(
    hits.some((h) => h.startsWith('server-error PUT')),
    'page writes got 500 answers',
  );
  const status = await machines.machineStatus(ctx, 'sf1');
  const alert = status.alerts.find((a) => a.kind === 'storage-throttled');
  assert.ok(alert, `a storage-throttled alert: ${JSON.stringify(status.alerts)}`);
  assert.match(alert.message, /503 Server Busy \/ 500/);
  await pointEqualsSource(brief.id, 'point cut while storage throttled');
  await healthyCycleClears('throttling');
});

test('answers slower than the client time-out are retried: an alert names the time-outs, no data is lost', async () => {
  const disk = await vm.disk();
  await disk.write(4 * MiB, pseudoRandom(8 * MiB, 3));
  await disk.flush();
  const hitsBefore = proxy.hits.length;
  // Uploads and downloads of segments: every other one held 4 s, past the 1.5 s per-try time-out.
  const remove = addRule({
    match: (_m, url) => segmentUrl.test(url),
    action: 'delay',
    delayMs: 4000,
    times: Infinity,
    share: 0.5,
  });
  let brief;
  try {
    brief = await machines.takePoint(ctx, 'sf1', { kind: 'crash' });
  } finally {
    remove();
  }
  assert.ok(proxy.hits.length > hitsBefore, 'requests were held past the time-out');
  const status = await machines.machineStatus(ctx, 'sf1');
  const alert = status.alerts.find((a) => a.kind === 'storage-unreachable');
  assert.ok(alert, `a storage-unreachable alert: ${JSON.stringify(status.alerts)}`);
  assert.match(alert.message, /got no answer in time|did not answer in time/);
  await pointEqualsSource(brief.id, 'point cut while storage was slow');
  await healthyCycleClears('time-outs');
});

test('a cache outage fills the spool: intake pauses, the step waits under a critical alert, nothing is dropped, it resumes', async () => {
  const disk = await vm.disk();
  // Six segments of change against a spool of two.
  await disk.write(32 * MiB, pseudoRandom(24 * MiB, 4));
  await disk.flush();
  const atFreeze = await vm.readAll();
  const remove = addRule({
    match: (m, url) => m === 'PUT' && segmentUrl.test(url),
    action: 'throttle',
    times: Infinity,
  });
  let restored = false;
  const point = machines.takePoint(ctx, 'sf1', { kind: 'crash' });
  try {
    // The client's retries give up: the workflow says so, and waits.
    const waiting = await waitForStatus(ctx, 'sf1', (s) =>
      s.alerts.some((a) => a.kind === 'storage-throttled' && a.severity === 'critical'),
    );
    const alert = waiting.alerts.find((a) => a.kind === 'storage-throttled') as Alert;
    assert.match(alert.message, /answered 503.*trying again in .* s\. Nothing is lost/);
    assert.equal(waiting.state, 'protected');
    assert.match(processServerLog(), /intake paused: the spool is full/);
    // The source keeps writing meanwhile: those writes wait in its dirty bitmap.
    await disk.write(8 * MiB, pseudoRandom(1 * MiB, 5));
    await disk.write(60 * MiB, textLike(1 * MiB));
    await disk.flush();
    remove();
    restored = true;
    const brief = await point;
    assertSameImage(
      await exportedImage(ctx, await pointById(ctx, 'sf1', brief.id)),
      atFreeze,
      'the point cut before the outage holds the disk as it was at its instant',
    );
  } finally {
    if (!restored) remove();
    await point.catch(() => undefined);
  }
  assert.match(processServerLog(), /intake resumed/);
  // The writes made during the outage come with the next point, and the alert clears.
  await healthyCycleClears('cache outage');
  const status = await machines.machineStatus(ctx, 'sf1');
  assert.equal(status.stats.failedCycles, 0, 'no cycle failed: the outage only delayed one');
});

test('the protect workflow with storage retries replays deterministically', async () => {
  const client = await ctx.client();
  await assertReplays(client.workflow.getHandle(protectWorkflowId('sf1')), 'protectMachine-storage-faults');
});
