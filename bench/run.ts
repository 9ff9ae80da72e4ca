// Entry of `npm run bench`: one run, one Azurite, one data set, OSR side by side with its
// baselines; prints the ratios against the targets and writes them into BENCHMARKS.md.
// Exits non-zero only on errors: a missed target is a result, not a failure.
import { createBlobServiceClient } from '../lib/azure/blob-client';
import fs from 'node:fs';
import path from 'node:path';
import { changePolicy } from '../operations/machines';
import { createManualPolicy } from './manual-protection';
import { startTestMachine, type TestMachine } from '../test/helpers/qemu-machine';
import { CpuMeter, formatCpu, type CpuUse } from './cpu';
import { deltaCycle, waitIdle, type DeltaCycle } from './delta';
import { allocationPlan, fillDisk } from './disk-data';
import type { Cleanup } from './harness';
import { projectRoot, runMain, secondsSince, startBenchStack, tempDir } from './harness';
import {
  allocatedExtents,
  osrInitialSync,
  rawImage,
  rcloneCopy,
  rcloneUnavailable,
  uploadPagesCopy,
  type CopyResult,
} from './initial-sync';
import {
  factsMarkdown,
  gib,
  machineFacts,
  markdownTable,
  mib,
  RECOVERY_SECTION,
  textTable,
  writeBenchmarksFile,
} from './report';
import { recoveryTime } from './recovery-time';
import { recoveryMarkdown, recoveryTextTable, verdict } from './recovery-time-report';
import { measureRpo } from './rpo';
import { runAgentBench } from './agent';
import { runAgentStackBench } from './agent-stack';
import { runRpoPipeline } from './rpo-pipeline';
import { runChurn } from './churn';
import { runWan } from './wan/sites';
import {
  BIG_DISK_BYTES,
  CHANGE_BYTES,
  DELTA_ROUNDS,
  detailsMarkdown,
  DISK_BYTES,
  headlineRows,
  QUICK,
  RPO,
  type RunResults,
} from './run-report';

/** The plain uploadPages copies are short and noisy on a shared machine: the median of a few. */
const BASELINE_RUNS = 3;

const begin = performance.now();
const say = (msg: string): void => console.log(`[${secondsSince(begin).toFixed(0).padStart(4)} s] ${msg}`);
function subtractCpu(a: CpuUse, b: CpuUse): CpuUse {
  const byName: Record<string, number> = {};
  for (const name of Object.keys(a.byName)) byName[name] = (a.byName[name] ?? 0) - (b.byName[name] ?? 0);
  return {
    wallSeconds: a.wallSeconds - b.wallSeconds,
    machine: a.machine - b.machine,
    byName,
    other: a.other - b.other,
  };
}

async function machine(
  cleanup: Cleanup,
  meter: CpuMeter,
  name: string,
  sizeBytes: number,
): Promise<TestMachine> {
  const vm = await startTestMachine({ sizes: [sizeBytes] });
  cleanup.add(`stop the ${gib(sizeBytes)} test machine`, () => vm.stop());
  meter.track(name, vm.daemon.pid);
  return vm;
}

async function main(cleanup: Cleanup): Promise<void> {
  const temporalBinary = process.env.OSR_TEMPORAL_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'temporal');
  const facts = await machineFacts(temporalBinary);
  say(
    `${facts.cores} × ${facts.cpu}, ${facts.ramGiB} GiB, Node ${facts.node}, ${facts.qemu}, Azurite ${facts.azurite}`,
  );
  const work = tempDir(cleanup, 'osr-bench-');
  const stack = await startBenchStack(cleanup, work);
  const { ctx } = stack;
  // The baselines write straight into the account, as the tools they stand for would.
  const account = createBlobServiceClient(stack.config);
  say(`stack up in ${work} (logs in ${stack.logs})`);
  const meter = new CpuMeter();
  meter.track('bench (+ rclone)', process.pid);
  for (const [name, pid] of Object.entries(stack.pids)) meter.track(name, pid);
  const cpu = (use: CpuUse) => formatCpu(use, facts.cores);
  const runStart = performance.now();
  const runBefore = meter.snapshot();
  const p = stack.config.pipeline;
  const settings = `pipeline.threads ${p.threads}, pipeline.uploadConcurrency ${p.uploadConcurrency}, pipeline.maxBytesInFlight ${mib(p.maxBytesInFlight)}, zstd level 1`;
  await createManualPolicy(ctx, 'bench-manual');

  // --- the data set --------------------------------------------------------------------------
  const vm = await machine(cleanup, meter, 'qemu-storage-daemon', DISK_BYTES);
  const fill = await fillDisk(await vm.disk(), allocationPlan(DISK_BYTES, 0.5, 1), 0.04, 2);
  const extents = await allocatedExtents(vm.daemon.nbdSocket, 'disk0');
  const allocated = extents.reduce((a, e) => a + e.length, 0);
  say(
    `${gib(DISK_BYTES)} disk: ${gib(allocated)} allocated in ${extents.length} extents ` +
      `(random ${gib(fill.randomBytes)}, text ${gib(fill.textBytes)}, zero blocks ${mib(fill.zeroBytes)})`,
  );
  if (allocated !== fill.allocatedBytes)
    say(`note: NBD reports ${allocated} allocated bytes, ${fill.allocatedBytes} were written`);
  const rawFile = path.join(work, 'disk0.raw');
  const convertSeconds = await rawImage(cleanup, vm.daemon.nbdSocket, 'disk0', rawFile);
  say(`raw image for the baselines in ${convertSeconds.toFixed(1)} s`);

  // --- 1. initial sync: baselines, then the product, all into the same Azurite --------------------
  const concurrency = stack.config.pipeline.uploadConcurrency;
  const medianRun = async (lanes: number) => {
    const runs: Array<{ result: CopyResult; cpu: CpuUse }> = [];
    for (let i = 0; i < BASELINE_RUNS; i++) {
      const run = await meter.measure(() => uploadPagesCopy(account, rawFile, extents, DISK_BYTES, lanes));
      say(`${run.result.method}: ${run.result.seconds.toFixed(1)} s; CPU s: ${cpu(run.cpu)}`);
      runs.push(run);
    }
    const sorted = [...runs].sort((a, b) => a.result.seconds - b.result.seconds);
    const mid = sorted[Math.floor(sorted.length / 2)] as (typeof runs)[number];
    const all = runs.map((r) => r.result.seconds.toFixed(1)).join(', ');
    return {
      result: { ...mid.result, detail: `${mid.result.detail ?? ''}; median of ${all} s` },
      cpu: mid.cpu,
    };
  };
  const { result: pages, cpu: pagesCpu } = await medianRun(concurrency);
  const { result: pages1, cpu: pages1Cpu } = await medianRun(1);
  // Without rclone the run goes on with the other baselines and says why this one is missing.
  const rcloneMissing = rcloneUnavailable();
  const rcloneRun = rcloneMissing
    ? undefined
    : await meter.measure(() => rcloneCopy(cleanup, account, rawFile, work));
  const [rclone, rcloneCpu] = [rcloneRun?.result, rcloneRun?.cpu];
  if (rclone && rcloneCpu) say(`${rclone.method}: ${rclone.seconds.toFixed(1)} s; CPU s: ${cpu(rcloneCpu)}`);
  else say(`rclone baseline skipped: ${rcloneMissing}`);
  fs.rmSync(rawFile, { force: true });

  // CPU split at the moment every segment is uploaded: before it the process server and the
  // segment uploads, after it the applier (download, decode, Put Page) and the point.
  const osrStart = performance.now();
  const osrBefore = meter.snapshot();
  let transferCpu: CpuUse | undefined;
  const osr = await osrInitialSync(
    ctx,
    {
      name: 'bench4',
      qmpSocket: vm.daemon.qmpSocket,
      nbdSocket: vm.daemon.nbdSocket,
      policy: 'bench-manual',
    },
    { onTransferDone: () => (transferCpu = meter.since(osrBefore, osrStart)) },
  );
  const osrCpu = meter.since(osrBefore, osrStart);
  say(
    `${osr.method}: ${osr.seconds.toFixed(1)} s, sent ${mib(osr.uploadedBytes)} for ${mib(osr.bytesChanged)}; ${osr.phases}`,
  );
  say(`  CPU s: ${cpu(osrCpu)}`);
  const applyCpu = transferCpu && subtractCpu(osrCpu, transferCpu);
  if (transferCpu && applyCpu)
    say(`  CPU s until every segment was uploaded: ${cpu(transferCpu)}; after: ${cpu(applyCpu)}`);

  // --- 2. delta cycles: 1 % scattered change, on the 4 GiB disk and on a 16 GiB one ---------------
  const big = await machine(cleanup, meter, 'qemu-storage-daemon 16 GiB', BIG_DISK_BYTES);
  // Mostly sparse: 16 runs of 4 MiB spread over the disk, so its own initial sync stays short.
  const bigPlan = Array.from({ length: 16 }, (_, i) => ({
    offset: (i * BIG_DISK_BYTES) / 16,
    length: 4 * 1024 * 1024,
  }));
  await fillDisk(await big.disk(), bigPlan, 0.04, 4);
  const bigSync = await osrInitialSync(ctx, {
    name: 'bench16',
    qmpSocket: big.daemon.qmpSocket,
    nbdSocket: big.daemon.nbdSocket,
    policy: 'bench-manual',
  });
  say(`16 GiB disk protected (${mib(bigSync.bytesChanged)} of data) in ${bigSync.seconds.toFixed(1)} s`);
  await waitIdle(ctx, 'bench4');
  const small: DeltaCycle[] = [];
  const large: DeltaCycle[] = [];
  // Interleaved, so a slow patch of the machine touches both sizes alike.
  for (let round = 0; round < DELTA_ROUNDS; round++) {
    for (const [list, name, target] of [
      [small, 'bench4', vm],
      [large, 'bench16', big],
    ] as const) {
      const cycle = await deltaCycle(
        ctx,
        name,
        await target.disk(),
        CHANGE_BYTES,
        100 + round * 2 + (list === small ? 0 : 1),
      );
      list.push(cycle);
      say(
        `delta ${gib(cycle.diskBytes)} #${round + 1}: ${cycle.seconds.toFixed(2)} s, sent ${mib(cycle.sentBytes)} ` +
          `(zstd-1 of the change ${mib(cycle.referenceBytes)}); ${cycle.phases}`,
      );
    }
  }

  // --- 3. RPO under a steady workload --------------------------------------------------------
  await waitIdle(ctx, 'bench4');
  say(
    `RPO: ${RPO.bytesPerSecond / 1e6} MB/s of writes, a point every ${RPO.crashPointSeconds} s, ${RPO.warmupSeconds} s warm-up, ${RPO.sampleSeconds} samples`,
  );
  const { result: rpo, cpu: rpoCpu } = await meter.measure(async () =>
    measureRpo(ctx, { machine: 'bench4', nbd: await vm.disk(), ...RPO }),
  );
  say(
    `RPO p50 ${rpo.p50.toFixed(1)} s, p99 ${rpo.p99.toFixed(1)} s, max ${rpo.max.toFixed(1)} s; ${rpo.meanPhases}`,
  );
  say(`  CPU s: ${cpu(rpoCpu)}`);

  // --- 4. recovery time: a plan of 10 machines (4 when quick) in two groups, drill and failover -------
  // Back to manual points, so the RPO machine's 10 s cycles do not run beside the recovery.
  await changePolicy(ctx, 'bench4', 'bench-manual');
  await waitIdle(ctx, 'bench4');
  const recoveryStart = performance.now();
  const recovery = await recoveryTime(cleanup, stack, {
    machines: QUICK ? 4 : 10,
    meter,
    cores: facts.cores,
    say,
  });
  const recoverySeconds = secondsSince(recoveryStart);
  say(`recovery-time section in ${recoverySeconds.toFixed(0)} s`);

  // --- results --------------------------------------------------------------------------------
  const results: RunResults = {
    allocated,
    extents,
    fill,
    convertSeconds,
    settings,
    osr,
    osrCpu,
    transferCpu,
    applyCpu,
    pages,
    pagesCpu,
    pages1,
    pages1Cpu,
    rclone,
    rcloneCpu,
    rcloneMissing,
    bigSync,
    small,
    large,
    rpo,
    rpoCpu,
    cpu,
  };
  const rows = headlineRows(results);
  console.log(`\n${textTable(rows)}\n`);
  console.log(`${recoveryTextTable(recovery)}\n\n${verdict(recovery)}\n`);
  const details = detailsMarkdown(results);

  const runSeconds = secondsSince(begin);
  const whole = meter.since(runBefore, runStart);
  const outside =
    `Processes outside the benchmark (other stacks or tests on the machine) used ${whole.other.toFixed(0)} of the ` +
    `${(whole.wallSeconds * facts.cores).toFixed(0)} CPU seconds of the run (${((100 * whole.other) / (whole.wallSeconds * facts.cores)).toFixed(0)} %).`;
  say(outside);
  if (QUICK) {
    console.log(details);
    return say('quick run: BENCHMARKS.md left as it is');
  }
  const file = await writeBenchmarksFile(
    process.env.OSR_BENCH_OUT ?? path.join(projectRoot, 'BENCHMARKS.md'),
    [
      '## Results',
      '',
      factsMarkdown(facts, runSeconds, settings),
      '',
      outside,
      '',
      markdownTable(rows),
      '',
      details,
    ].join('\n'),
  );
  await writeBenchmarksFile(
    file,
    recoveryMarkdown(
      recovery,
      factsMarkdown(facts, recoverySeconds, `${settings}; recovery-time section of \`npm run bench\``),
    ),
    RECOVERY_SECTION,
  );
  say(`results written to ${file}`);
}

if (process.argv.includes('--wan')) runMain((cleanup) => runWan(cleanup, say), say);
else if (process.argv.includes('--churn')) runMain((cleanup) => runChurn(cleanup, say), say);
else if (process.argv.includes('--rpo')) runMain((cleanup) => runRpoPipeline(cleanup, say), say);
else if (process.argv.includes('--agent-stack')) runMain((cleanup) => runAgentStackBench(cleanup, say), say);
else if (process.argv.includes('--agent')) runMain((cleanup) => runAgentBench(cleanup, say), say);
else runMain(main, say);
