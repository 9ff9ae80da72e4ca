// A source that goes away during the first sync (the storage daemon killed while its disk is being
// sent): the transfer fails fast instead of retrying silently, the machine says it is failing and
// why, one alert per problem (with a count) instead of one per failed cycle, and failed cycles back
// off (growing gaps, counted from the workflow's own history) instead of spinning. When the source
// is back, a point is cut, the failure state and alerts clear, and the point equals the disk.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { createQcow2, startStorageDaemon, type StorageDaemon } from '../../lib/qemu/storage-daemon';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import { startFaultProxy, type FaultProxy, type FaultRule } from '../helpers/fault-proxy';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { createManualPolicy } from '../helpers/testbed';

const MiB = 1024 * 1024;
const SEGMENT_BYTES = 4 * MiB;
const DATA_BYTES = 48 * MiB; // 12 segments
const NAME = 'outage';
let stack: TestStack;
let ctx: ControlContext;
let proxy: FaultProxy;
let dir: string;
let image: string;
let daemon: StorageDaemon | undefined;

before(async () => {
  stack = await startTestStack();
  proxy = await startFaultProxy(stack.config.storage.azuritePort);
  // The process server uploads through the proxy (so the test can slow the transfer down and see
  // it running) with a small spool, so it reads the source segment by segment as uploads go.
  const psConfig = path.join(stack.stateDir, 'ps-config.json');
  fs.writeFileSync(psConfig, JSON.stringify({ pipeline: { maxBytesInFlight: 2 * SEGMENT_BYTES } }));
  await Promise.all([
    stack.startWorker('control'),
    stack.startWorker('cloud-applier'),
    stack.startWorker('process-server', {
      OSR_AZURITE_PORT: String(proxy.port),
      OSR_UPLOAD_CONCURRENCY: '1',
      OSR_CONFIG: psConfig,
    }),
  ]);
  ctx = new ControlContext(stack.config);
  await createManualPolicy(ctx);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-out-'));
  image = path.join(dir, 'disk0.qcow2');
  await createQcow2(image, 64 * MiB);
  daemon = await startStorageDaemon({ stateDir: dir, images: [image] });
  const nbd = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'disk0' });
  await nbd.write(0, pseudoRandom(DATA_BYTES, 7));
  await nbd.flush();
  await nbd.close();
});

after(async () => {
  await daemon?.stop();
  await ctx?.close();
  await proxy?.close();
  await stack?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a source killed mid-sync: fast failure, one alert with a count, backoff, then recovery', async () => {
  const slow: FaultRule = {
    match: (method, url) => method === 'PUT' && /\/osr-cache\/outage\/disk0\/\d+\/\d+\.seg/.test(url),
    action: 'delay',
    delayMs: 700,
    times: Infinity,
  };
  proxy.rules.push(slow);
  await machines.protect(ctx, {
    name: NAME,
    qmpSocket: daemon!.qmpSocket,
    nbdSocket: daemon!.nbdSocket,
    policy: 'manual',
  });

  // The transfer is running: two of its segment uploads reached storage, ten are still to come.
  await until('the first segment uploads', () => ((slow.seen ?? 0) >= 2 ? true : undefined), 120_000);
  const uploadsAtKill = slow.seen ?? 0;
  process.kill(daemon!.pid, 'SIGKILL');
  const killedAt = Date.now();
  daemon = undefined;
  assert.ok(
    uploadsAtKill < DATA_BYTES / SEGMENT_BYTES,
    `killed mid-transfer (${uploadsAtKill} uploads seen)`,
  );

  // Within a minute: an alert that the source does not answer, and the machine says it is failing.
  const failing = await waitForStatus(
    ctx,
    NAME,
    (s) => s.failing !== undefined && s.alerts.some((a) => a.kind === 'source-unreachable'),
    60_000,
  );
  assert.equal(failing.state, 'initial-sync');
  assert.ok(failing.failing?.sourceUnreachable, 'the failure is named as the source not answering');
  assert.match(failing.failing?.reason ?? '', /does not answer|cannot connect|no such socket|refused/);
  assert.ok(Date.now() - killedAt < 60_000, 'alerted within a minute of the kill');

  // Let it fail a few more times; every failure folds into the same two alerts.
  const later = await waitForStatus(ctx, NAME, (s) => (s.failing?.failures ?? 0) >= 4, 120_000);
  const failures = later.failing?.failures ?? 0;
  const cycleAlerts = later.alerts.filter((a) => a.kind === 'cycle-failed');
  const sourceAlerts = later.alerts.filter((a) => a.kind === 'source-unreachable');
  assert.equal(cycleAlerts.length, 1, 'one cycle-failed alert, not one per cycle');
  assert.equal(sourceAlerts.length, 1, 'one source-unreachable alert');
  assert.ok((cycleAlerts[0]?.count ?? 0) >= failures, `the alert counts every failure (${failures})`);
  assert.equal(later.stats.failedCycles, cycleAlerts[0]?.count, 'the count is the failed cycles');

  // Independently of the workflow's own state: the cycles it started, read from its history.
  const handle = (await ctx.client()).workflow.getHandle(protectWorkflowId(NAME));
  const history = await handle.fetchHistory();
  const attempts = (history.events ?? [])
    // Each cycle's first call to the source: the release of the point in time the failed transfer
    // left (it must merge its changes back before a new freeze), or a freeze.
    .filter((e) =>
      ['freezePoint', 'releasePoint'].includes(
        e.activityTaskScheduledEventAttributes?.activityType?.name ?? '',
      ),
    )
    .map(
      (e) => Number(String(e.eventTime?.seconds ?? 0)) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6),
    )
    .filter((t) => t >= killedAt); // the freeze of the cycle in progress came before
  assert.ok(attempts.length >= 3, `cycles retried after the kill (${attempts.length})`);
  assert.ok(
    attempts.length <= failures + 1,
    `no cycle beyond the failures counted (${attempts.length} for ${failures})`,
  );
  const gaps = attempts.slice(1).map((t, i) => t - (attempts[i] as number));
  for (let i = 1; i < gaps.length; i++) {
    assert.ok(
      (gaps[i] as number) >= (gaps[i - 1] as number),
      `gaps between failed cycles grow: ${gaps.join(', ')} ms`,
    );
  }
  assert.ok((gaps.at(-1) as number) >= 1.8 * (gaps[0] as number), `backoff doubles: ${gaps.join(', ')} ms`);
  assert.ok((gaps[0] as number) >= 1500, `no cycle follows a failed one at once: ${gaps.join(', ')} ms`);

  // The source is back: a point asked for is cut at once, and everything clears.
  proxy.rules.splice(proxy.rules.indexOf(slow), 1);
  daemon = await startStorageDaemon({ stateDir: dir, images: [image] });
  const point = await machines.takePoint(ctx, NAME, { kind: 'crash' });
  const healthy = await machines.machineStatus(ctx, NAME);
  assert.equal(healthy.failing, undefined, 'no longer failing');
  assert.equal(healthy.state, 'protected');
  assert.deepEqual(
    healthy.alerts.filter((a) => a.kind === 'cycle-failed' || a.kind === 'source-unreachable'),
    [],
    'the alerts cleared with the problem',
  );
  const source = await NbdClient.connect({ socket: daemon.nbdSocket, exportName: 'disk0' });
  const expected = await source.read(0, source.size);
  await source.close();
  assertSameImage(
    await exportedImage(ctx, await pointById(ctx, NAME, point.id)),
    expected,
    'point after the outage',
  );
  await assertReplays(handle, 'protectMachine-source-outage');
});
