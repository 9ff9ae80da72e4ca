// Bounded history (issue 7, load): a protected machine's workflow continues as new every
// maxCyclesPerRun cycles, so no run's history grows with the machine's age. A cheap stand-in for
// the load run (bench/load.ts), which checks the same at 50 machines with the default 100 cycles:
// here one machine with a policy cutting a point every 2 s, 2 cycles per run, 12 cycles; every run
// stays under a bound that the whole chain of runs, taken as one history, goes well past.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as machines from '../../operations/machines';
import { createPolicy } from '../../operations/policies';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const CYCLES = 12;
const CYCLES_PER_RUN = 2;
/**
 * Events a run of 2 cycles may hold: a cycle is about 8 activities (3 events each), their workflow
 * tasks and search-attribute upserts, plus the RPO checks' timers between cycles: 40–70 measured.
 */
const RUN_BOUND = 250;
let bed: Testbed;
let vm: TestMachine;

before(async () => {
  bed = await startTestbed();
  vm = await startTestMachine({ sizes: [16 * MiB] });
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
});

test('history stays bounded across continueAsNew: every run is short, the chain is long', async () => {
  const { ctx } = bed;
  // Scheduled points, as in production (a point requested just before a run ends is cut first,
  // in the same run, so back-to-back requests would stretch runs).
  await createPolicy(ctx, {
    name: 'every-2s',
    crashPointSeconds: 2,
    appPointSeconds: 0,
    rpoThresholdSeconds: 20,
  });
  await machines.protect(ctx, {
    name: 'hb1',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'every-2s',
    maxCyclesPerRun: CYCLES_PER_RUN,
  });
  const disk = await vm.disk();
  let written = 0;
  let stop = false;
  const writer = (async () => {
    for (let i = 0; i < 1000; i++) {
      await disk.write((i % 16) * MiB, pseudoRandom(64 * 1024, i + 1));
      written++;
      await new Promise((r) => setTimeout(r, 200));
      if (stop) return;
    }
  })();
  let status;
  try {
    status = await waitForStatus(ctx, 'hb1', (s) => s.stats.cycles >= CYCLES, 300_000);
  } finally {
    stop = true;
    await writer;
  }
  assert.ok(written > 0);
  assert.equal(status.stats.failedCycles, 0);
  const points = await ctx.vault.points('hb1');
  assert.ok(points.length >= CYCLES, `every cycle's point is in the catalog: ${points.length}`);

  const client = await ctx.client();
  const id = protectWorkflowId('hb1');
  const runIds: string[] = [];
  // Visibility is eventually consistent: wait until it lists several runs. (A run may hold more
  // than CYCLES_PER_RUN cycles: a point requested while it is about to continue as new is cut first.)
  const minRuns = 4;
  for (let tries = 0; tries < 100 && runIds.length < minRuns; tries++) {
    runIds.length = 0;
    for await (const run of client.workflow.list({ query: `WorkflowId = '${id}'` })) runIds.push(run.runId);
    if (runIds.length < minRuns) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(runIds.length >= minRuns, `at least ${minRuns} runs for ${CYCLES} cycles, saw ${runIds.length}`);
  runIds.reverse(); // oldest first
  const lengths: number[] = [];
  for (const runId of runIds) {
    const history = await client.workflow.getHandle(id, runId).fetchHistory();
    lengths.push(history.events?.length ?? 0);
  }
  const total = lengths.reduce((a, b) => a + b, 0);
  console.log(`history-bound: ${runIds.length} runs of ${lengths.join(', ')} events, ${total} in all`);
  assert.ok(
    lengths.every((n) => n <= RUN_BOUND),
    `every run holds at most ${RUN_BOUND} events: ${lengths.join(', ')}`,
  );
  assert.ok(total > RUN_BOUND, `the chain as one history would hold ${total} events, more than the bound`);
});
