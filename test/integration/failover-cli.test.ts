// `osr failover …` as an operator runs it, on the real stack: --json output, and refusals with
// their reason and exit code (4 not found, 5 conflict, 2 usage).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import type { TestStack } from '../helpers/test-stack';
import { runCli } from '../helpers/cli';
import { startTestbed, type Testbed } from '../helpers/testbed';

let bed: Testbed;
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;

const osr = (...args: string[]) => runCli(args, stack.env, { timeout: 120_000 });

before(async () => {
  bed = await startTestbed();
  ({ stack, ctx } = bed);
  vm = await startTestMachine({ sizes: [8 * MiB()] });
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(MiB(), 5));
  await disk.flush();
  await machines.protect(ctx, {
    name: 'cli1',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(ctx, 'cli1', (s) => s.state === 'protected');
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
});

function MiB(): number {
  return 1024 * 1024;
}

test('osr failover test, status and cleanup with --json', async () => {
  const drill = await osr('failover', 'test', 'cli1', '--json');
  assert.equal(drill.code, 0, drill.stderr);
  const { ref, status } = JSON.parse(drill.stdout) as {
    ref: { job: string; workflowId: string };
    status: RecoveryStatus;
  };
  assert.equal(status.state, 'ready');
  const shown = await osr('failover', 'status', ref.job, '--json');
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal((JSON.parse(shown.stdout) as RecoveryStatus).job, ref.job);
  const cleaned = await osr('failover', 'cleanup', 'cli1', '--json');
  assert.equal(cleaned.code, 0, cleaned.stderr);
  assert.equal(
    (JSON.parse(cleaned.stdout) as Array<{ status: RecoveryStatus }>)[0]?.status.state,
    'cleaned-up',
  );
  const again = await osr('failover', 'cleanup', 'cli1');
  assert.equal(again.code, 4);
  assert.match(again.stderr, /no drill to clean up for "cli1"/);
});

test('osr failover refuses with the reason: unknown machine, unknown point, planned with a point', async () => {
  const unknown = await osr('failover', 'start', 'nope');
  assert.equal(unknown.code, 4);
  assert.match(unknown.stderr, /no protected machine named nope; known: cli1/);
  const badPoint = await osr('failover', 'test', 'cli1', '--point', 'no-such');
  assert.equal(badPoint.code, 4);
  assert.match(badPoint.stderr, /has no recovery point "no-such"/);
  const both = await osr('failover', 'start', 'cli1', '--planned', '--point', 'latest');
  assert.equal(both.code, 2);
  assert.match(both.stderr, /planned failover uses the final point/);
  const noFailover = await osr('failover', 'commit', 'cli1');
  assert.equal(noFailover.code, 4);
  assert.match(noFailover.stderr, /no failover of cli1 is running/);
});

test('osr failover start, a second start refused, change-point, commit', async () => {
  const started = await osr('failover', 'start', 'cli1', '--json');
  assert.equal(started.code, 0, started.stderr);
  const { ref, status } = JSON.parse(started.stdout) as {
    ref: { workflowId: string };
    status: RecoveryStatus;
  };
  assert.equal(status.state, 'failed-over');
  const second = await osr('failover', 'start', 'cli1');
  assert.equal(second.code, 5);
  assert.match(second.stderr, new RegExp(`already running: ${ref.workflowId}`));
  const changed = await osr('failover', 'change-point', 'cli1', '--point', 'latest', '--json');
  assert.equal(changed.code, 0, changed.stderr);
  assert.equal((JSON.parse(changed.stdout) as { status: RecoveryStatus }).status.state, 'failed-over');
  const committed = await osr('failover', 'commit', 'cli1', '--json');
  assert.equal(committed.code, 0, committed.stderr);
  assert.equal((JSON.parse(committed.stdout) as { status: RecoveryStatus }).status.state, 'committed');
  const list = await osr('failover', 'status', '--json');
  assert.equal(list.code, 0, list.stderr);
  const jobs = JSON.parse(list.stdout) as Array<{ workflowId: string; kind: string }>;
  assert.ok(
    jobs.some((j) => j.workflowId === ref.workflowId && j.kind === 'failover'),
    list.stdout,
  );
  const human = await osr('failover', 'status', ref.workflowId);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /committed/);
});
