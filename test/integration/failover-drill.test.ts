// Drills (test failover) on the real stack: a drill during active replication changes no recovery
// point and does not stop replication; its disks are the point's images byte for byte; it can be
// materialized and boot-checked; cleanup removes exactly what it made.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { failoverBlobClient } from '../../activities/cloud-applier/recovered-disks';
import { NbdClient } from '../../lib/qemu/nbd-client';
import type { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { createPolicy } from '../../operations/policies';
import { recoveryDocs, type RecoveredMachine } from '../../shared/recovery-types';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { recoveryStatusQuery, type RecoveryStatus } from '../../shared/contracts/recovery-job';
import { assertSameImage, exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { pollFor } from '../helpers/poll';
import { assertReplays } from '../helpers/replay';
import type { TestStack } from '../helpers/test-stack';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const M = 'drill1';
let bed: Testbed;
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;

before(async () => {
  bed = await startTestbed();
  ({ stack, ctx } = bed);
  // A point every 2 s: replication is busy while the drill runs.
  await createPolicy(ctx, {
    name: 'busy',
    crashPointSeconds: 2,
    appPointSeconds: 0,
    rpoThresholdSeconds: 60,
  });
  vm = await startTestMachine({ sizes: [16 * MiB, 8 * MiB] });
  for (const i of [0, 1]) {
    const disk = await vm.disk(i);
    await disk.write(0, pseudoRandom(3 * MiB, i + 10));
    await disk.flush();
  }
  await machines.protect(ctx, {
    name: M,
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'busy',
  });
  await waitForStatus(ctx, M, (s) => s.state === 'protected');
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
});

/** Every recovery point as the catalog has it, and every replica snapshot (blob@snapshot). */
async function replicationState() {
  const points = new Map((await ctx.vault.points(M)).map((p) => [p.id, JSON.stringify(p)]));
  const snapshots = new Set<string>();
  const replica = ctx.blobService.getContainerClient(CONTAINERS.replica);
  for await (const b of replica.listBlobsFlat({ prefix: `${M}/`, includeSnapshots: true }))
    if (b.snapshot) snapshots.add(`${b.name}@${b.snapshot}`);
  return { points, snapshots };
}

async function failoverBlobs(): Promise<string[]> {
  const names: string[] = [];
  for await (const b of ctx.blobService.getContainerClient(CONTAINERS.failover).listBlobsFlat())
    names.push(b.name);
  return names.sort();
}

let drillJob: string;
let drillWorkflowId: string;

test('a drill during active replication changes no recovery point, and replication goes on', async () => {
  // A known image: the point the drill is made from.
  const disk = await vm.disk(0);
  await disk.write(5 * MiB, pseudoRandom(1 * MiB, 77));
  await disk.flush();
  const brief = await machines.takePoint(ctx, M, { kind: 'crash', tag: 'drill-source' });
  const point = await pointById(ctx, M, brief.id);

  // Writes keep coming, so every new cycle carries data.
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      await disk.write(8 * MiB + (i % 64) * 65536, pseudoRandom(65536, i));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const before = await replicationState();
  const statusBefore = await machines.machineStatus(ctx, M);

  const { ref, status } = await failover.startTestFailover(ctx, M, { point: point.id });
  assert.ok(status);
  drillJob = ref.job;
  drillWorkflowId = ref.workflowId;
  assert.match(ref.workflowId, new RegExp(`^drill/${M}/\\d{8}T\\d{9}Z$`));
  assert.equal(status.state, 'ready');
  assert.equal(status.point?.id, point.id);
  // Replication cut at least one more point while and after the drill ran.
  const statusAfter = await waitForStatus(
    ctx,
    M,
    (s) => s.stats.cycles >= statusBefore.stats.cycles + 2,
    60_000,
  );
  writing = false;
  await writer;
  const afterState = await replicationState();

  for (const [id, doc] of before.points)
    assert.equal(afterState.points.get(id), doc, `point ${id} unchanged`);
  for (const s of before.snapshots) assert.ok(afterState.snapshots.has(s), `snapshot ${s} still there`);
  const newPoints = [...afterState.points.keys()].filter((id) => !before.points.has(id));
  assert.ok(newPoints.length >= 1, 'replication published new points during the drill');
  // Every new snapshot belongs to a point replication published, none to the drill.
  const pointSnapshots = new Set(
    [...afterState.points.values()].flatMap((doc) =>
      (JSON.parse(doc) as typeof point).disks.map((d) => `${d.blob}@${d.snapshot}`),
    ),
  );
  for (const s of afterState.snapshots)
    if (!before.snapshots.has(s))
      assert.ok(pointSnapshots.has(s), `new snapshot ${s} is a replication point`);
  assert.equal(statusAfter.state, 'protected');
  assert.equal(statusAfter.stats.failedCycles, statusBefore.stats.failedCycles, 'no cycle failed');
  assert.ok(!statusAfter.alerts.some((a) => a.kind === 'rpo-exceeded'), 'replication kept its RPO');

  // The drill's disks are the point's images, byte for byte, in writable page blobs.
  assert.deepEqual(await failoverBlobs(), [`test-${M}-${drillJob}/disk0`, `test-${M}-${drillJob}/disk1`]);
  for (const d of status.disks) {
    const blob = failoverBlobClient(ctx.blobService, d.blob);
    const props = await blob.getProperties();
    assert.equal(props.blobType, 'PageBlob');
    assertSameImage(
      await blob.downloadToBuffer(0, d.sizeBytes),
      await exportedImage(ctx, point, d.diskId),
      d.blob,
    );
  }
  const record = (await ctx.vault.read<RecoveredMachine>(recoveryDocs.recovered(M, drillJob)))?.value;
  assert.equal(record?.kind, 'drill');
  assert.equal(record?.point.id, point.id);
  assert.deepEqual(
    record?.disks.map((d) => d.diskId),
    ['disk0', 'disk1'],
  );
  assert.deepEqual(
    status.steps.map((s) => [s.name, s.state]),
    [
      ['create disks', 'done'],
      ['record', 'done'],
      ['materialize', 'skipped'],
      ['boot check', 'skipped'],
    ],
  );
});

test('a drill can be materialized as local qcow2 disks and boot-checked; a failing probe is reported', async () => {
  const out = path.join(stack.stateDir, 'boot.txt');
  await failover.configureRecovery(ctx, M, {
    materialize: { format: 'qcow2' },
    bootCheck: {
      // Plays the VM: looks at its disks, then keeps running until it is stopped.
      command: `qemu-img info -U --output=json "\${OSR_RECOVERED_DISKS%%,*}" > ${out}.tmp && echo "$OSR_MACHINE $OSR_POINT_ID" >> ${out}.tmp && mv ${out}.tmp ${out} && exec sleep 60`,
      probe: `grep -q '"format": "qcow2"' ${out}`,
      probeTimeoutSeconds: 20,
    },
  });
  // The first test's drill is still alive (cleaned up by the third): a second one is asked for.
  const { ref, status } = await failover.startTestFailover(ctx, M, { point: 'latest', another: true });
  assert.ok(status?.materialized && status.bootCheck);
  assert.equal(status.bootCheck.ok, true, JSON.stringify(status.bootCheck));
  assert.match(fs.readFileSync(out, 'utf8'), new RegExp(`${M} ${status.point?.id}`));
  const point = await pointById(ctx, M, status.point!.id);
  // The local daemon serves the point's images.
  for (const [i, f] of status.materialized.files.entries()) {
    const nbd = await NbdClient.connect({ socket: status.materialized.nbdSocket, exportName: `disk${i}` });
    const image = await nbd.read(0, nbd.size);
    await nbd.close();
    assertSameImage(image, await exportedImage(ctx, point, f.diskId), `materialized ${f.diskId}`);
  }

  await failover.configureRecovery(ctx, M, {
    materialize: null,
    bootCheck: { command: 'exec sleep 60', probe: 'false', probeTimeoutSeconds: 2 },
  });
  const bad = await failover.startTestFailover(ctx, M, { another: true });
  assert.equal(bad.status?.state, 'ready', 'a failed boot check is a finding, not a failed drill');
  assert.equal(bad.status?.bootCheck?.ok, false);
  assert.match(bad.status?.bootCheck?.reason ?? '', /probe did not succeed/);
  await failover.configureRecovery(ctx, M, { bootCheck: null });

  // Cleanup of the materialized drill stops its daemon and removes its folder too.
  const [cleaned] = await failover.cleanupTestFailover(ctx, ref.job);
  assert.equal(cleaned?.status?.state, 'cleaned-up');
  assert.equal(fs.existsSync(status.materialized.dir), false);
  assert.throws(() => process.kill(status.materialized!.pid!, 0), /ESRCH/);
  await failover.cleanupTestFailover(ctx, bad.ref.job);
});

test('cleanup removes exactly what the drill made, beside another live drill; errors name the problem', async () => {
  // A second drill of the same machine stays alive through the first one's cleanup.
  const other = await failover.startTestFailover(ctx, M, { point: 'latest', another: true });
  assert.equal(other.status?.state, 'ready', other.status?.error);
  const otherBlobs = [`test-${M}-${other.ref.job}/disk0`, `test-${M}-${other.ref.job}/disk1`];
  assert.deepEqual(
    await failoverBlobs(),
    [...otherBlobs, `test-${M}-${drillJob}/disk0`, `test-${M}-${drillJob}/disk1`].sort(),
  );
  const otherRecord = JSON.stringify((await ctx.vault.read(recoveryDocs.recovered(M, other.ref.job)))?.value);
  const otherImages = await Promise.all(
    other.status.disks.map((d) =>
      failoverBlobClient(ctx.blobService, d.blob).downloadToBuffer(0, d.sizeBytes),
    ),
  );

  const points = (await replicationState()).points;
  const [cleaned] = await failover.cleanupTestFailover(ctx, drillJob);
  assert.ok(cleaned?.status);
  assert.equal(cleaned.status.state, 'cleaned-up');
  assert.deepEqual(await failoverBlobs(), otherBlobs, "only the cleaned drill's disks are gone");
  assert.equal(await ctx.vault.read(recoveryDocs.recovered(M, drillJob)), undefined);
  const after = (await replicationState()).points;
  for (const [id, doc] of points) assert.equal(after.get(id), doc, `cleanup left point ${id} alone`);
  // The other drill is untouched: its record and every byte of its disks.
  assert.equal(
    JSON.stringify((await ctx.vault.read(recoveryDocs.recovered(M, other.ref.job)))?.value),
    otherRecord,
    "the other drill's record survives",
  );
  for (const [i, d] of other.status.disks.entries())
    assertSameImage(
      await failoverBlobClient(ctx.blobService, d.blob).downloadToBuffer(0, d.sizeBytes),
      otherImages[i] as Buffer,
      `the other drill's ${d.blob}`,
    );
  await failover.cleanupTestFailover(ctx, other.ref.job);
  assert.deepEqual(await failoverBlobs(), []);
  await assert.rejects(failover.cleanupTestFailover(ctx, drillJob), /no drill to clean up/);
  await assert.rejects(failover.startTestFailover(ctx, 'nope'), /no protected machine named nope/);
  await assert.rejects(
    failover.startTestFailover(ctx, M, { point: 'no-such' }),
    /has no recovery point "no-such"/,
  );

  const client = await ctx.client();
  await assertReplays(client.workflow.getHandle(drillWorkflowId), 'testFailover-drill');
  await assertReplays(client.workflow.getHandle(cleaned.ref.workflowId), 'cleanupTestFailover-drill');
});

test('a drill survives a kill -9 of the cloud applier in the middle of a step', async () => {
  const up = path.join(stack.stateDir, 'booted');
  await failover.configureRecovery(ctx, M, {
    bootCheck: { command: 'exec sleep 90', probe: `test -e ${up}`, probeTimeoutSeconds: 120 },
  });
  const { ref } = await failover.startTestFailover(ctx, M, { wait: false });
  const client = await ctx.client();
  const handle = client.workflow.getHandle(ref.workflowId);
  const pidFile = path.join(stack.stateDir, 'recovered', `${M}-${ref.job}.boot.pid`);
  // The boot check is under way once its step runs and its boot command has a pid.
  const firstBoot = await pollFor(
    async () => {
      const running = (await handle.query(recoveryStatusQuery))?.steps.some(
        (s) => s.name === 'boot check' && s.state === 'running',
      );
      const pid = running && fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8')) : 0;
      return pid > 0 ? pid : undefined;
    },
    {
      timeoutMs: 60_000,
      intervalMs: 100,
      failure: (e) => new Error(`the drill reached no boot check: ${String(e)}`),
    },
  );
  assert.ok(alive(firstBoot), `the boot command ${firstBoot} runs when the applier is killed`);
  await stack.killWorker('cloud-applier');
  await stack.startWorker('cloud-applier');
  fs.writeFileSync(up, '');
  // The boot check is retried on the new worker once the dead one's heartbeat times out.
  const status = (await handle.result()) as RecoveryStatus;
  assert.equal(status.state, 'ready');
  assert.equal(status.bootCheck?.ok, true);
  // The boot command the dead worker left running was stopped by the retry.
  assert.ok(!alive(firstBoot), `the first boot command (${firstBoot}) is stopped`);
  const point = await pointById(ctx, M, status.point!.id);
  for (const d of status.disks) {
    assertSameImage(
      await failoverBlobClient(ctx.blobService, d.blob).downloadToBuffer(0, d.sizeBytes),
      await exportedImage(ctx, point, d.diskId),
      `${d.blob} after the crash`,
    );
  }
  await failover.configureRecovery(ctx, M, { bootCheck: null });
  await failover.cleanupTestFailover(ctx, ref.job);
  assert.deepEqual(await failoverBlobs(), []);
});

/** Running, not a zombie (a container's init may never reap orphans). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
