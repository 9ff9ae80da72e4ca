// App-consistent points, a drill, planned failovers and failback of a machine protected through
// the Mobility agent, with the real parts: the agent test guest under QEMU (over SSH), the agent
// pushed into it, Temporal, Azurite and the workers. Freeze scripts run around an app-consistent
// point (their marker in it, its ext4 clean); a failing one gives a crash-consistent point, an
// alert, all thawed. The drill and the failover boot the recovered disks in QEMU and the probe sees
// the point's bytes, records 1..k. A planned failover stops the machine's writes (no progress while
// stopped, every acknowledged record in the final point); a cancel, and `osr agent resume` after a
// commit, give them back. Failback writes the recovery-site copy onto the machine's own disks
// through its agent (refused while one is mounted), and re-enable protects it again.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import { machineStatus } from '../../operations/machines';
import type { RecoveryPoint } from '../../shared/replication-types';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import { reprotectWorkflowId } from '../../shared/contracts/reprotect';
import type { FailbackStatus } from '../../shared/contracts/failback';
import * as failback from '../../operations/failback';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { pseudoRandom } from '../helpers/qemu-machine';
import { differingBytes } from '../helpers/failback-fixture';
import { resumeAgentWritesWorkflowId } from '../../shared/contracts/resume-agent-writes';
import { freePort } from '../../lib/process/ports';
import { installAgent, restartAgent, startAgentWorkers } from '../helpers/agent-fixture';
import { startAgentGuest, type AgentGuest } from '../helpers/agent-guest';
import {
  MARKER_SCRIPT,
  RECORDS,
  agentBootCheck,
  diskImage,
  diskSums,
  probed,
  recordCount,
  untilStep,
} from '../helpers/agent-recovery';
import { assertRefused, cliFor, runCli } from '../helpers/cli';
import { inspectExt4 } from '../helpers/ext4-image';
import { pollFor } from '../helpers/poll';
import { assertReplays } from '../helpers/replay';
import { exportedImage, pointById } from '../helpers/protection';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const MiB = 1024 * 1024;
/** vdb holds the records (RECORDS), vdc an ext4 mounted at /data. */
const M = 'web';
let stack: TestStack;
let guest: AgentGuest;
let ctx: ControlContext;
let work: string;
let agentId: string;
const osr = cliFor(() => stack.env);

async function sh(command: string, timeoutMs?: number): Promise<string> {
  const r = await guest.ssh(command, timeoutMs);
  assert.equal(r.code, 0, `${command}: ${r.stderr}`);
  return r.stdout;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The records of a point's vdb; they must be 1..k. Returns k. */
const recordsOf = async (point: RecoveryPoint): Promise<number> =>
  recordCount(await exportedImage(ctx, point, 'vdb'));

before(async () => {
  const agentPort = await freePort();
  [stack, guest] = await Promise.all([
    startTestStack(),
    startAgentGuest({ hostname: 'web-1', diskSizes: [8 * MiB, 16 * MiB, 16 * MiB], bootTimeoutMs: 240_000 }),
  ]);
  ctx = new ControlContext(stack.config);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-agent-recovery-'));
  await startAgentWorkers(stack, agentPort);
  agentId = await installAgent(osr, guest);
  const policy = await osr([
    ...['policy', 'create', 'agent'],
    ...['--crash-every', '10s', '--app-every', '0', '--rpo', '5m'],
  ]);
  assert.equal(policy.code, 0, policy.stderr);
  // A QEMU guest-agent socket means nothing for an agent machine: refused, nothing recorded.
  const qga = await osr([
    ...['protect', 'x', '--agent', agentId, '--disks', 'vdb'],
    '--guest-agent',
    '/run/qga.sock',
  ]);
  assertRefused(qga, 2, /--guest-agent is a QEMU guest-agent socket .* drop it/);
  assert.equal(await ctx.vault.machine('x'), undefined);
  await sh(
    `mkdir -p /etc/osr-agent/freeze.d && cat > /etc/osr-agent/freeze.d/10-marker <<'EOF'\n${MARKER_SCRIPT}\nEOF\nchmod 755 /etc/osr-agent/freeze.d/10-marker`,
  );
  const r = await osr([
    ...['protect', M, '--agent', agentId, '--disks', 'vdb,vdc', '--policy', 'agent'],
    ...['--pre', 'echo "pre $OSR_POINT_IN_TIME" >> /var/log/freeze.log'],
    ...['--post', 'echo "post $OSR_POINT_IN_TIME" >> /var/log/freeze.log'],
  ]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  await pollFor(async () => ((await ctx.vault.points(M)).length > 0 ? true : undefined), {
    timeoutMs: 180_000,
    intervalMs: 2000,
    failure: () => new Error('no first point within 180 s'),
  });
  // An ext4 with a journal (made here: the guest's busybox makes none) on the tracked vdc.
  const fsImage = path.join(work, 'fs.img');
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '1024', fsImage, '16M']);
  fs.writeFileSync(`${fsImage}.gz`, execFileSync('gzip', ['-c', fsImage]));
  await guest.put(`${fsImage}.gz`, '/tmp/fs.img.gz');
  await sh(
    'gunzip -c /tmp/fs.img.gz | dd of=/dev/mapper/osr-vdc bs=1M conv=fsync 2>/dev/null && mkdir -p /data && mount -t ext4 /dev/mapper/osr-vdc /data',
  );
  await sh(
    `cat > /tmp/records.sh <<'EOF'\n${RECORDS}\nEOF\nsetsid sh /tmp/records.sh </dev/null >/dev/null 2>&1 &`,
  );
  await pollFor(
    async () => (Number((await sh('cat /tmp/acked 2>/dev/null || echo 0')).trim()) >= 3 ? true : undefined),
    {
      timeoutMs: 60_000,
      intervalMs: 1000,
      failure: () => new Error('the workload acknowledged no record within 60 s'),
    },
  );
});

after(async () => {
  await guest?.stop();
  await stack?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** A point taken with `osr point`, as the catalog has it. */
async function takePoint(app: boolean): Promise<RecoveryPoint> {
  const r = await runCli(['point', M, ...(app ? ['--app'] : []), '--json'], stack.env, { timeout: 240_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  return pointById(ctx, M, (JSON.parse(r.stdout) as { id: string }).id);
}

test('an app-consistent point: scripts ran around its instant, and its ext4 is clean', async () => {
  const point = await takePoint(true);
  const alerts = JSON.stringify((await machineStatus(ctx, M)).alerts);
  assert.equal(point.kind, 'app', `an app-consistent point was asked for; alerts: ${alerts}`);
  const pit = `${M}-c${point.cycle}`;
  fs.writeFileSync(path.join(work, 'vdc.img'), await exportedImage(ctx, point, 'vdc'));
  const { fsck, features, content } = inspectExt4(path.join(work, 'vdc.img'), '/osr-marker');
  assert.equal(
    content.trim(),
    pit,
    'the freeze script wrote the marker of this very point before it was cut',
  );
  assert.equal(fsck, 0, 'e2fsck -fn finds the point clean');
  assert.doesNotMatch(features, /needs_recovery/, `the journal was flushed by fsfreeze: ${features}`);
  const log = await sh('cat /var/log/freeze.log');
  assert.match(log, new RegExp(`pre ${pit}\\npost ${pit}\\nthaw ${pit}\\n`), log);
});

test('a failing freeze script gives a crash-consistent point, an alert naming it, and a thawed machine', async () => {
  await sh(
    `printf '#!/bin/sh\\n[ "$1" = freeze ] && { echo "app refuses" >&2; exit 3; }\\necho "thaw-20 $OSR_POINT_IN_TIME" >> /var/log/freeze.log\\n' > /etc/osr-agent/freeze.d/20-fails && chmod 755 /etc/osr-agent/freeze.d/20-fails`,
  );
  const point = await takePoint(true);
  assert.equal(point.kind, 'crash', 'no app-consistent claim without the application quiesced');
  const alert = (await machineStatus(ctx, M)).alerts.find((a) => a.kind === 'quiesce-failed');
  assert.match(
    alert?.message ?? '',
    /freeze script \/etc\/osr-agent\/freeze\.d\/20-fails failed: exit 3: app refuses/,
  );
  const pit = (await sh(`grep -o 'thaw-20 ${M}-c[0-9]*' /var/log/freeze.log | tail -n 1`))
    .trim()
    .split(' ')[1];
  const log = await sh('cat /var/log/freeze.log');
  assert.ok(pit && log.includes(`post ${pit}\nthaw-20 ${pit}\nthaw ${pit}\n`), `post and thaws ran: ${log}`);
  // Nothing stays frozen: the filesystem takes writes at once, and the workload goes on.
  await sh('echo after > /data/after && sync', 20_000);
  await sh('rm /etc/osr-agent/freeze.d/20-fails');
  // App requests that met a crash cycle under way waited for the next (patched('agent-recovery')).
  await assertReplays(
    (await ctx.client()).workflow.getHandle(protectWorkflowId(M)),
    'protectMachine-agent-app-points',
  );
});

/** The committed planned failover: failback starts from its recovery-site copy. */
let failedOver: RecoveryStatus | undefined;

/** Materialized failovers of M boot the agent guest's kernel on the recovered disks. */
async function configureBoot(name: string): Promise<void> {
  await failover.configureRecovery(ctx, M, {
    materialize: { format: 'qcow2' },
    bootCheck: await agentBootCheck(work, name),
  });
}

async function assertBootedPoint(status: RecoveryStatus | undefined, name: string, point: RecoveryPoint) {
  const seen = probed(status);
  assert.equal(seen.host, name, 'the probe reached the booted recovered guest');
  assert.equal(
    seen.vda,
    sha256(await exportedImage(ctx, point, 'vdb')),
    'the booted vda is the point of vdb',
  );
  assert.equal(
    seen.vdb,
    sha256(await exportedImage(ctx, point, 'vdc')),
    'the booted vdb is the point of vdc',
  );
}

test('a drill boots the recovered disks and the probe sees the point; cleanup leaves nothing', async () => {
  const point = await takePoint(false);
  const k = await recordsOf(point);
  assert.ok(k >= 3, `the point holds records 1..${k}`);
  await configureBoot('drill');
  const { ref, status } = await failover.startTestFailover(ctx, M, { point: point.id });
  assert.equal(status?.state, 'ready', JSON.stringify(status));
  await assertBootedPoint(status, 'drill', point);
  const dir = status?.materialized?.dir ?? '';
  assert.ok(fs.existsSync(dir));
  const [cleanup] = await failover.cleanupTestFailover(ctx, ref.job);
  assert.equal(cleanup?.status?.state, 'cleaned-up');
  assert.ok(!fs.existsSync(dir), 'the local disks are gone');
  const left: string[] = [];
  for await (const b of ctx.blobService
    .getContainerClient('osr-failover')
    .listBlobsFlat({ prefix: `test-${M}-` }))
    left.push(b.name);
  assert.deepEqual(left, []);
});

/** The newest record the workload acknowledged, from its own file in the guest (not OSR's log). */
async function acked(): Promise<number> {
  return Number((await sh('cat /tmp/acked')).trim());
}

/** The final point a planned failover cut, from its status. */
async function finalPoint(status: RecoveryStatus | undefined): Promise<RecoveryPoint> {
  const step = status?.steps.find((s) => s.name === 'final point');
  const id = /point (\S+) at/.exec(step?.detail ?? '')?.[1];
  assert.ok(id, `final point step: ${JSON.stringify(step)}`);
  return pointById(ctx, M, id);
}

/** Waits for the workload to acknowledge a record past `n` (its writes go on). */
async function ackedPast(n: number): Promise<number> {
  return pollFor(async () => ((await acked()) > n ? acked() : undefined), {
    timeoutMs: 60_000,
    intervalMs: 1000,
    failure: () => new Error(`the workload acknowledged nothing past ${n} within 60 s`),
  });
}

test('a cancelled planned failover stops the writes while it runs, then gives them back', async () => {
  const { ref } = await failover.startFailover(ctx, M, { planned: true, wait: false });
  await untilStep(ctx, ref.workflowId, 'stop source writes');
  const atStop = await acked();
  const point = await finalPoint(await untilStep(ctx, ref.workflowId, 'final point'));
  assert.equal(await acked(), atStop, 'the workload acknowledged nothing while its writes were stopped');
  const k = await recordsOf(point);
  // Every record acknowledged before the stop; at most the one in flight at the stop besides.
  assert.ok(k >= atStop && k <= atStop + 1, `the final point holds 1..${k}, ${atStop} were acknowledged`);
  const handle = (await ctx.client()).workflow.getHandle(ref.workflowId);
  await handle.cancel();
  await assert.rejects(handle.result(), (err: Error & { cause?: Error }) => {
    assert.match(
      `${err.message} ${err.cause?.message}`,
      new RegExp(`agent ${agentId} resumed the machine's writes`),
    );
    return true;
  });
  await ackedPast(atStop + 1);
  // The stop on the agent's holder, the resume in the teardown (patched('agent-planned-failover')).
  await assertReplays(handle, 'failover-agent-planned-cancelled');
});

test('a planned failover boots its final point, holding every acknowledged record; writes stay stopped until `osr agent resume`', async () => {
  await configureBoot('failover');
  const { ref, status } = await failover.startFailover(ctx, M, { planned: true });
  assert.equal(status?.state, 'failed-over', JSON.stringify(status));
  const total = await acked();
  const point = await finalPoint(status);
  const k = await recordsOf(point);
  assert.ok(k >= total && k <= total + 1, `the final point holds 1..${k}, ${total} were acknowledged`);
  await assertBootedPoint(status, 'failover', point);
  const committed = await failover.commitFailover(ctx, M);
  assert.equal(committed.state, 'committed');
  failedOver = status;
  // Through the final point, the boot check and the commit, the machine acknowledged nothing.
  assert.equal(await acked(), total, 'the workload made no progress while its writes were stopped');
  // An agent restart meanwhile (a clean stop, a new process) keeps them stopped.
  await restartAgent(osr, guest, agentId);
  assert.match(await sh('/usr/sbin/dmsetup info osr-vdb osr-vdc'), /SUSPENDED[\s\S]*SUSPENDED/);
  assert.equal(await acked(), total, 'nothing was acknowledged through the agent restart');
  const resumed = await osr(['agent', 'resume', agentId]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, new RegExp(`agent ${agentId} resumed the machine's writes after \\d+ s`));
  await ackedPast(total + 1);
  // The committed failover disabled tracking: once resumed, the stack goes (the open top stays linear).
  await pollFor(
    async () => (/osr-vdb-origin/.test(await sh('PATH=/usr/sbin:/sbin:$PATH dmsetup ls')) ? undefined : true),
    {
      timeoutMs: 60_000,
      intervalMs: 2000,
      failure: () => new Error('the tracking stack stayed after resume'),
    },
  );
  const again = await osr(['agent', 'resume', agentId]);
  assert.match(again.stdout, /had no writes stopped/);
  const client = await ctx.client();
  await assertReplays(client.workflow.getHandle(ref.workflowId), 'failover-agent-planned');
  await assertReplays(client.workflow.getHandle(resumeAgentWritesWorkflowId(agentId)), 'resumeAgentWrites');
});

test('failback into the agent machine: reprotect writes the recovery-site copy onto its own disks through the agent, failback brings it back, re-enable protects it again', async () => {
  const materialized = failedOver?.materialized;
  assert.ok(materialized?.nbdSocket, 'the failed-over machine runs in the recovery site');
  // The recovery-site copy: vdb is the daemon's disk0, vdc its disk1 (the failover's order).
  let failbackId = '';
  const recovered = await Promise.all(
    ['disk0', 'disk1'].map((exportName) =>
      NbdClient.connect({ socket: materialized.nbdSocket as string, exportName }),
    ),
  );
  try {
    const B = pseudoRandom(256 * 1024, 5);
    await recovered[0]!.write(4 * MiB, B); // written in the recovery site after the failover
    await recovered[0]!.flush();
    await sh('pkill -f records.sh; while pgrep -f records.sh >/dev/null; do sleep 0.2; done', 30_000);
    // Failback overwrites the machine's disks: one still mounted is refused, naming the mount.
    const mounted = await osr(['reprotect', M]);
    assert.notEqual(mounted.code, 0);
    assert.match(
      `${mounted.stdout}${mounted.stderr}`,
      /vdc is in use through \/dev\/mapper\/osr-vdc \(mounted at \/data\): failback overwrites it, so stop what uses it \(unmount it\)/,
    );
    await sh('umount /data');
    // B, and the records the workload wrote after the resume (counted here, on both copies).
    const differing = differingBytes(await diskImage(guest, 'vdb'), await recovered[0]!.read(0, 16 * MiB));
    const rp = await runCli(['reprotect', M, '--interval', '5'], stack.env, { timeout: 600_000 });
    assert.equal(rp.code, 0, `${rp.stdout}\n${rp.stderr}`);
    const reprotected = await failback.reprotectStatus(ctx, M);
    assert.equal(reprotected.state, 'protected', JSON.stringify(reprotected));
    const vdb = reprotected.disks.find((d) => d.diskId === 'vdb');
    assert.equal(vdb?.resyncMode, 'resync', "the machine's own disk is there: a diff resync");
    assert.equal(vdb?.resyncRawBytes, differing, 'the resync covers exactly the differing 64 KiB blocks');
    const copy = async () => (await Promise.all(recovered.map((r) => r.read(0, 16 * MiB)))).map(sha256);
    assert.deepEqual(await diskSums(guest, 'vdb', 'vdc'), await copy(), 'reprotected: the disks match');
    // Given up: the disks keep the applied cycle and are free again (an O_EXCL claim fails a mount).
    const stopped = await osr(['reprotect-stop', M]);
    assert.equal(stopped.code, 0, stopped.stderr);
    await sh('mount -t ext4 -o ro,noload /dev/vdc /data && umount /data');
    assert.deepEqual(await diskSums(guest, 'vdb', 'vdc'), await copy(), 'stopped: the disks are kept');
    const rpHandle = (await ctx.client()).workflow.getHandle(reprotectWorkflowId(M));
    await assertReplays(rpHandle, 'reprotect-agent-stopped'); // rolled back and released through the agent
    // Reprotected again: nothing differs, so nothing crosses.
    const again = await runCli(['reprotect', M, '--interval', '5'], stack.env, { timeout: 600_000 });
    assert.equal(again.code, 0, `${again.stdout}\n${again.stderr}`);
    const resynced = (await failback.reprotectStatus(ctx, M)).disks.map((d) => d.resyncRawBytes);
    assert.deepEqual(resynced, [0, 0], 'the second diff resync found no differing block');
    // C in the recovery site; failback's final cycle carries it.
    const C = pseudoRandom(128 * 1024, 6);
    await recovered[0]!.write(10 * MiB, C);
    await recovered[0]!.flush();
    const atFailback = await copy();
    const fb = await runCli(['failback', M, '--json'], stack.env, { timeout: 600_000 });
    assert.equal(fb.code, 0, `${fb.stdout}\n${fb.stderr}`);
    const job = JSON.parse(fb.stdout) as { workflowId: string; status: FailbackStatus };
    failbackId = job.workflowId;
    const up = job.status.steps.find((x) => x.name === 'bring up original')?.detail;
    assert.match(up ?? '', /^none: web's disks \(vdb, vdc\) hold the recovery-site copy, closed by agent/);
    assert.deepEqual(
      await diskSums(guest, 'vdb', 'vdc'),
      atFailback,
      'failed back: the copy at the failback',
    );
  } finally {
    for (const r of recovered) await r.close().catch(() => undefined);
  }
  // Protected again through the agent: stacks back over the disks, the first point is the disk.
  const re = await runCli(['reenable', M, '--json'], stack.env, { timeout: 600_000 });
  assert.equal(re.code, 0, `${re.stdout}\n${re.stderr}`);
  const reenableId = (JSON.parse(re.stdout) as { workflowId: string }).workflowId;
  const stacks = await sh('PATH=/usr/sbin:/sbin:$PATH dmsetup ls');
  for (const d of ['vdb', 'vdc']) assert.match(stacks, new RegExp(`osr-${d}-origin`), `${d}'s stack is back`);
  const [vdbNow] = await diskSums(guest, 'vdb');
  const point = await takePoint(false);
  assert.equal(
    sha256(await exportedImage(ctx, point, 'vdb')),
    vdbNow,
    'the first point after re-enable is the disk',
  );
  await sh('mount -t ext4 /dev/mapper/osr-vdc /data && ls /data && umount /data');
  const client = await ctx.client();
  await assertReplays(client.workflow.getHandle(reprotectWorkflowId(M)), 'reprotect-agent');
  await assertReplays(client.workflow.getHandle(failbackId), 'failback-agent');
  await assertReplays(client.workflow.getHandle(reenableId), 'reenable-agent');
});
