// Recovery plans on the real stack with three protected machines (each its own qemu-storage-daemon
// with a 1 MiB qcow2 disk) in two groups: validation, a drill whose script action logs the order of
// the groups and whose manual action waits for approval, its cleanup, then failover and commit.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { failoverBlobClient } from '../../activities/cloud-applier/recovered-disks';
import * as machines from '../../operations/machines';
import * as plans from '../../operations/plans';
import { recoveryDocs, type FailoverLock } from '../../shared/recovery-types';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { PlanStatus } from '../../shared/contracts/recovery-plan';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const NAMES = ['web-1', 'web-2', 'db-1'];
let bed: Testbed;
const vms: TestMachine[] = [];
const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-plan-'));
const log = path.join(logDir, 'actions.log');

before(async () => {
  bed = await startTestbed();
  for (const [i, name] of NAMES.entries()) {
    const vm = await startTestMachine({ sizes: [MiB] });
    vms.push(vm);
    const disk = await vm.disk();
    await disk.write(0, pseudoRandom(256 * 1024, i + 1));
    await disk.flush();
    await machines.protect(bed.ctx, {
      name,
      qmpSocket: vm.daemon.qmpSocket,
      nbdSocket: vm.daemon.nbdSocket,
      policy: 'manual',
    });
  }
  for (const name of NAMES) {
    await waitForStatus(bed.ctx, name, (s) => s.state === 'protected');
    await machines.takePoint(bed.ctx, name, { kind: 'crash' });
  }
});

after(async () => {
  await bed?.stop();
  for (const vm of vms) await vm.stop();
  fs.rmSync(logDir, { recursive: true, force: true });
});

async function failoverBlobs(): Promise<string[]> {
  const out: string[] = [];
  for await (const b of bed.ctx.blobService.getContainerClient(CONTAINERS.failover).listBlobsFlat())
    out.push(b.name);
  return out.sort();
}

async function waitFor(job: string, until: (s: PlanStatus) => boolean): Promise<PlanStatus> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const s = await plans.planStatus(bed.ctx, job).catch(() => undefined);
    if (s && until(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out; last status ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('plan validation: unknown machine, a machine in two groups, empty group', async () => {
  const { ctx } = bed;
  await assert.rejects(
    plans.createPlan(ctx, { name: 'bad', groups: [{ machines: ['web-1', 'nope'] }] }),
    /group g1: nope is not a protected machine/,
  );
  await assert.rejects(
    plans.createPlan(ctx, { name: 'bad', groups: [{ machines: ['web-1'] }, { machines: ['web-1'] }] }),
    /web-1 is in two groups \(g1 and g2\)/,
  );
  await assert.rejects(
    plans.createPlan(ctx, { name: 'bad', groups: [{ machines: ['web-1'] }, { machines: [] }] }),
    /group g2 has no machine/,
  );
  await assert.rejects(plans.getPlan(ctx, 'bad'), /no plan named bad/);
});

test('drill of a plan: groups in order, script actions, a manual action approved, cleanup leaves nothing', async () => {
  const { ctx } = bed;
  const script = `echo "$OSR_ACTION group=$OSR_GROUP machines=$OSR_MACHINES job=$OSR_JOB points=$OSR_POINTS plan=$OSR_PLAN" >> ${log}`;
  await plans.createPlan(ctx, {
    name: 'shop',
    groups: [
      { name: 'db', machines: ['db-1'], post: [{ kind: 'script', command: script, timeoutSeconds: 30 }] },
      {
        name: 'web',
        machines: ['web-1', 'web-2'],
        pre: [
          {
            id: 'check-db',
            kind: 'manual',
            instruction: 'Check the database',
            timeoutSeconds: 600,
            onTimeout: 'fail',
          },
          { kind: 'script', command: script, timeoutSeconds: 30 },
        ],
      },
    ],
  });
  await assert.rejects(
    plans.createPlan(ctx, { name: 'shop', groups: [{ machines: ['db-1'] }] }),
    /already exists/,
  );

  const { ref } = await plans.startPlan(ctx, 'shop', 'test-failover', { wait: false });
  const waiting = await waitFor(ref.job, (s) => s.groups[1]!.actions[0]!.state === 'waiting');
  // The first group is done, the second waits for the operator: nothing of it started.
  assert.equal(waiting.groups[0]!.state, 'done');
  assert.ok(waiting.groups[1]!.machines.every((m) => m.state === 'pending'));
  assert.equal((await failoverBlobs()).length, 1, "only db-1's disk so far");
  await assert.rejects(plans.approve(ctx, ref.job, 'web-pre-2', 'alice'), /is a script/);
  await assert.rejects(plans.approve(ctx, ref.job, 'nope', 'alice'), /has no action nope/);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await plans.planStatus(ctx, ref.job)).state, 'running', 'still waiting after a second');

  const approved = await plans.approve(ctx, ref.workflowId, 'check-db', 'alice');
  assert.equal(approved.groups[1]!.actions[0]!.approvedBy, 'alice');
  const done = await waitFor(ref.job, (s) => s.state !== 'running');
  assert.equal(done.state, 'ready', done.error);
  assert.ok(done.groups[1]!.startedAt! >= done.groups[0]!.endedAt!, 'web after db');

  const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
  assert.equal(lines.length, 2);
  assert.match(
    lines[0]!,
    new RegExp(`^db-post-1 group=db machines=db-1 job=${ref.job} points=db-1=\\S+ plan=shop$`),
  );
  assert.match(
    lines[1]!,
    /^web-pre-2 group=web machines=web-1,web-2 .*points=web-1=\S+,web-2=\S+ plan=shop$/,
  );
  assert.deepEqual(await failoverBlobs(), NAMES.map((m) => `test-${m}-${ref.job}/disk0`).sort());
  const web2 = await failoverBlobClient(ctx.blobService, `test-web-2-${ref.job}/disk0`).downloadToBuffer(
    0,
    256 * 1024,
  );
  assert.ok(web2.equals(pseudoRandom(256 * 1024, 2)), "web-2's drilled disk is its source");
  const machinesDone = done.groups.flatMap((g) => g.machines);
  assert.deepEqual(
    machinesDone.map((m) => m.workflowId).sort(),
    NAMES.map((m) => `drill/${m}/${ref.job}`).sort(),
  );
  const handle = (await ctx.client()).workflow.getHandle(ref.workflowId);
  await assertReplays(handle, 'recoveryPlan-drill');

  const cleaned = await plans.startPlan(ctx, 'shop', 'cleanup');
  assert.equal(cleaned.status?.state, 'cleaned-up');
  assert.deepEqual(await failoverBlobs(), []);
  assert.deepEqual(await ctx.vault.list('recovered/'), []);
  for (const name of NAMES) assert.equal((await machines.machineStatus(ctx, name)).state, 'protected');
});

test('manual action timeouts: continue goes on, fail ends the plan', async () => {
  const { ctx } = bed;
  await plans.createPlan(ctx, {
    name: 'slow',
    groups: [
      {
        machines: ['web-1'],
        pre: [{ kind: 'manual', instruction: 'nobody answers', timeoutSeconds: 1, onTimeout: 'continue' }],
      },
      {
        machines: ['db-1'],
        pre: [{ kind: 'manual', instruction: 'nobody answers', timeoutSeconds: 1, onTimeout: 'fail' }],
      },
    ],
  });
  await assert.rejects(plans.startPlan(ctx, 'slow', 'test-failover'), /g2-pre-1 was not approved within 1 s/);
  const job = (await plans.listPlanJobs(ctx, 'slow'))[0]!;
  const s = await plans.planStatus(ctx, job.job);
  assert.equal(s.state, 'failed');
  assert.equal(s.groups[0]!.actions[0]!.state, 'timed-out');
  assert.equal(s.groups[0]!.machines[0]!.state, 'done', 'continue: web-1 was drilled');
  assert.equal(s.groups[1]!.machines[0]!.state, 'pending', 'fail: db-1 never started');
  assert.equal((await plans.startPlan(ctx, 'slow', 'cleanup')).status?.state, 'cleaned-up');
  assert.deepEqual(await failoverBlobs(), []);
});

test('a failing or hanging script action fails the plan before its group starts', async () => {
  const { ctx } = bed;
  const before = await failoverBlobs();
  await plans.createPlan(ctx, {
    name: 'broken',
    groups: [
      { machines: ['web-1'], pre: [{ kind: 'script', command: 'echo boom; exit 3', timeoutSeconds: 30 }] },
    ],
  });
  await plans.createPlan(ctx, {
    name: 'stuck',
    groups: [{ machines: ['web-1'], pre: [{ kind: 'script', command: 'sleep 60', timeoutSeconds: 1 }] }],
  });
  await assert.rejects(plans.startPlan(ctx, 'broken', 'test-failover'), /script g1-pre-1 exited 3: boom/);
  const t0 = Date.now();
  await assert.rejects(plans.startPlan(ctx, 'stuck', 'test-failover'), /script g1-pre-1 timed out after 1 s/);
  assert.ok(Date.now() - t0 < 20_000, 'the timeout killed the script');
  assert.deepEqual(await failoverBlobs(), before, 'no machine was drilled');
});

test('failover of a plan, then commit', async () => {
  const { ctx } = bed;
  await plans.createPlan(ctx, {
    name: 'all',
    groups: [{ machines: ['db-1'] }, { machines: ['web-1', 'web-2'] }],
  });
  const { ref, status } = await plans.startPlan(ctx, 'all', 'failover');
  assert.equal(status?.state, 'failed-over', status?.error);
  assert.deepEqual(await failoverBlobs(), NAMES.map((m) => `${m}-${ref.job}/disk0`).sort());
  // One failover per machine: a second plan failover is refused and takes no lock.
  await assert.rejects(plans.startPlan(ctx, 'all', 'failover'), /already failed over or failing over/);

  const committed = await plans.commitPlan(ctx, 'all');
  assert.equal(committed.state, 'committed', committed.error);
  for (const name of NAMES) {
    const lock = (await ctx.vault.read<FailoverLock>(recoveryDocs.failoverLock(name)))?.value;
    assert.equal(lock?.state, 'committed', `${name} committed`);
  }
  const handle = (await ctx.client()).workflow.getHandle(ref.workflowId);
  await handle.result();
  await assertReplays(handle, 'recoveryPlan-failover');
});
