// `osr plan …` and `osr approve` as an operator runs them, on the real stack: --json output, and
// refusals with their reason and exit code (2 usage/invalid, 4 not found, 5 conflict).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as machines from '../../operations/machines';
import type { RecoveryPlan } from '../../shared/plan-types';
import type { PlanStatus } from '../../shared/contracts/recovery-plan';
import { waitForStatus } from '../helpers/protection';
import { startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { runCli } from '../helpers/cli';
import { startTestbed, type Testbed } from '../helpers/testbed';

let bed: Testbed;
let vm: TestMachine;

const osr = (...args: string[]) => runCli(args, bed.stack.env, { timeout: 120_000 });

before(async () => {
  bed = await startTestbed();
  vm = await startTestMachine({ sizes: [1024 * 1024] });
  await machines.protect(bed.ctx, {
    name: 'app-1',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(bed.ctx, 'app-1', (s) => s.state === 'protected');
  await machines.takePoint(bed.ctx, 'app-1', { kind: 'crash' });
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
});

test('osr plan create, test-failover, status, approve, cleanup', async () => {
  const bad = await osr('plan', 'create', 'p', '--group', 'app-1,ghost');
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /ghost is not a protected machine/);
  const badGroup = await osr('plan', 'create', 'p', '--group', 'app-1', '--manual', 'g3:pre:x');
  assert.equal(badGroup.code, 2);
  assert.match(badGroup.stderr, /no group g3/);

  const created = await osr(
    'plan',
    'create',
    'p',
    '--group',
    'app-1',
    '--manual',
    'g1:post:Smoke test the app',
    '--json',
  );
  assert.equal(created.code, 0, created.stderr);
  const plan = JSON.parse(created.stdout) as RecoveryPlan;
  assert.deepEqual(plan.groups[0]?.post, [
    {
      id: 'g1-post-1',
      kind: 'manual',
      instruction: 'Smoke test the app',
      timeoutSeconds: 3600,
      onTimeout: 'fail',
    },
  ]);
  assert.equal((await osr('plan', 'create', 'p', '--group', 'app-1')).code, 5, 'exists');
  assert.match((await osr('plan', 'show', 'p')).stdout, /g1-post-1: approve "Smoke test the app"/);
  assert.equal((await osr('plan', 'show', 'nope')).code, 4);

  const started = await osr('plan', 'test-failover', 'p', '--no-wait', '--json');
  assert.equal(started.code, 0, started.stderr);
  const { ref } = JSON.parse(started.stdout) as { ref: { job: string; workflowId: string } };
  assert.match(ref.workflowId, /^plan\/p\/test-failover\/\d{8}T\d{9}Z$/);
  let status: PlanStatus | undefined;
  for (let i = 0; i < 300 && status?.groups[0]?.actions[0]?.state !== 'waiting'; i++) {
    const s = await osr('plan', 'status', ref.job, '--json');
    if (s.code === 0) status = JSON.parse(s.stdout) as PlanStatus;
    else await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(status?.groups[0]?.machines[0]?.state, 'done');
  assert.equal((await osr('approve', 'nojob', 'g1-post-1')).code, 4);
  const approved = await osr('approve', ref.job, 'g1-post-1', '--by', 'bob');
  assert.equal(approved.code, 0, approved.stderr);
  assert.match(approved.stdout, /approved g1-post-1 .* as bob/);
  const again = await osr('approve', ref.job, 'g1-post-1', '--by', 'bob');
  // The plan had nothing after that action: it is over, and says so.
  assert.equal(again.code, 5, 'approving twice is refused');
  assert.match(again.stderr, /has ended \(ready\): nothing to approve/);

  const cleaned = await osr('plan', 'cleanup', 'p', '--json');
  assert.equal(cleaned.code, 0, cleaned.stderr);
  assert.equal((JSON.parse(cleaned.stdout) as { status: PlanStatus }).status.state, 'cleaned-up');
  const list = await osr('plan', 'status');
  assert.match(list.stdout, /test-failover/);
  assert.match(list.stdout, /cleanup/);
});
