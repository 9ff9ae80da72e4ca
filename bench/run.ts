// Entry of `npm run bench`: one run, one Azurite, one data set, OSR side by side with its
// baselines; prints the ratios against the targets and writes them into BENCHMARKS.md.
// Exits non-zero only on errors: a missed target is a result, not a failure.
import fs from 'node:fs';
import path from 'node:path';
import { changePolicy } from '../operations/machines';
import { createPolicy } from '../operations/policies';
import { startTestMachine, type TestMachine } from '../test/helpers/qemu-machine';
import { CpuMeter, formatCpu, type CpuUse } from './cpu';
import { deltaCycle, waitIdle, type DeltaCycle } from './delta';
import { allocationPlan, BLOCK_BYTES, fillDisk } from './disk-data';
import { Cleanup, GiB, projectRoot, secondsSince, startBenchStack, tempDir } from './harness';
import {
  allocatedExtents,
  osrInitialSync,
  rawImage,
  rcloneCopy,
  uploadPagesCopy,
  type CopyResult,
} from './initial-sync';
import {
  factsMarkdown,
  gib,
  machineFacts,
  markdownTable,
  mib,
  rate,
  RECOVERY_SECTION,
  textTable,
  writeBenchmarksFile,
  type Row,
} from './report';
import { recoveryMarkdown, recoveryTextTable, recoveryTime, verdict } from './recovery-time';
import { measureRpo } from './rpo';

/** OSR_BENCH_QUICK=1: a small smoke run of every step (1/16 of the sizes, a 4-machine plan), printed, not written to BENCHMARKS.md. */
const QUICK = process.env.OSR_BENCH_QUICK === '1';
const DISK_BYTES = (QUICK ? 0.25 : 4) * GiB;
const BIG_DISK_BYTES = 4 * DISK_BYTES;
/** 1 % of the 4 GiB disk, in whole 64 KiB blocks; the 16 GiB disk gets the same amount. */
const CHANGE_BYTES = Math.floor((0.01 * DISK_BYTES) / BLOCK_BYTES) * BLOCK_BYTES;
const DELTA_ROUNDS = 5;
/** The plain uploadPages copies are short and noisy on a shared machine: the median of a few. */
const BASELINE_RUNS = 3;
const RPO = {
  bytesPerSecond: 5e6,
  crashPointSeconds: 10,
  warmupSeconds: QUICK ? 10 : 20,
  sampleSeconds: QUICK ? 20 : 120,
};
const TARGETS = { vsUploadPages: 0.8, vsRclone: 2, sentVsZstd: 1.1, bigDiskTime: 1.3, rpoP99: 15 };

const begin = performance.now();
const say = (msg: string): void => console.log(`[${secondsSince(begin).toFixed(0).padStart(4)} s] ${msg}`);
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

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
  say(`stack up in ${work} (logs in ${stack.logs})`);
  const meter = new CpuMeter();
  meter.track('bench (+ rclone)', process.pid);
  for (const [name, pid] of Object.entries(stack.pids)) meter.track(name, pid);
  const cpu = (use: CpuUse) => formatCpu(use, facts.cores);
  const runStart = performance.now();
  const runBefore = meter.snapshot();
  const p = stack.config.pipeline;
  const settings = `pipeline.threads ${p.threads}, pipeline.uploadConcurrency ${p.uploadConcurrency}, pipeline.maxBytesInFlight ${mib(p.maxBytesInFlight)}, zstd level 1`;
  await createPolicy(ctx, {
    name: 'bench-manual',
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
  });

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
      const run = await meter.measure(() =>
        uploadPagesCopy(ctx.blobService, rawFile, extents, DISK_BYTES, lanes),
      );
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
  const { result: rclone, cpu: rcloneCpu } = await meter.measure(() =>
    rcloneCopy(cleanup, ctx.blobService, rawFile, work),
  );
  say(`${rclone.method}: ${rclone.seconds.toFixed(1)} s; CPU s: ${cpu(rcloneCpu)}`);
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
  const sent = small.reduce((a, c) => a + c.sentBytes, 0);
  const reference = small.reduce((a, c) => a + c.referenceBytes, 0);
  const smallTime = median(small.map((c) => c.seconds));
  const largeTime = median(large.map((c) => c.seconds));
  const covered = (r: { seconds: number }) => `${rate(allocated, r.seconds)} (${r.seconds.toFixed(1)} s)`;
  const rows: Row[] = [
    {
      measure: 'initial sync vs uploadPages ×8',
      osr: covered(osr),
      reference: covered(pages),
      ratio: pages.seconds / osr.seconds,
      target: `≥ ${TARGETS.vsUploadPages}×`,
      met: pages.seconds / osr.seconds >= TARGETS.vsUploadPages,
    },
    {
      measure: 'initial sync vs uploadPages ×1',
      osr: covered(osr),
      reference: covered(pages1),
      ratio: pages1.seconds / osr.seconds,
    },
    {
      measure: 'initial sync vs rclone copy',
      osr: covered(osr),
      reference: covered(rclone),
      ratio: rclone.seconds / osr.seconds,
      target: `≥ ${TARGETS.vsRclone}×`,
      met: rclone.seconds / osr.seconds >= TARGETS.vsRclone,
    },
    {
      measure: `delta bytes sent vs zstd-1 of the change (${DELTA_ROUNDS} cycles, 4 GiB)`,
      osr: mib(sent),
      reference: mib(reference),
      ratio: sent / reference,
      target: `≤ ${TARGETS.sentVsZstd}×`,
      met: sent / reference <= TARGETS.sentVsZstd,
    },
    {
      measure: 'delta cycle time, 16 GiB vs 4 GiB disk (median)',
      osr: `${largeTime.toFixed(2)} s`,
      reference: `${smallTime.toFixed(2)} s`,
      ratio: largeTime / smallTime,
      target: `≤ ${TARGETS.bigDiskTime}×`,
      met: largeTime / smallTime <= TARGETS.bigDiskTime,
    },
    { measure: 'RPO p50 (5 MB/s, 10 s points)', osr: `${rpo.p50.toFixed(1)} s`, reference: '—' },
    {
      measure: 'RPO p99 (5 MB/s, 10 s points)',
      osr: `${rpo.p99.toFixed(1)} s`,
      reference: `${TARGETS.rpoP99} s`,
      ratio: rpo.p99 / TARGETS.rpoP99,
      target: `≤ ${TARGETS.rpoP99} s`,
      met: rpo.p99 <= TARGETS.rpoP99,
    },
  ];
  console.log(`\n${textTable(rows)}\n`);
  console.log(`${recoveryTextTable(recovery)}\n\n${verdict(recovery)}\n`);

  const deltaRow = (c: DeltaCycle) =>
    `| ${gib(c.diskBytes)} | ${mib(c.changedBytes)} | ${mib(c.bytesChanged)} | ${mib(c.sentBytes)} | ${mib(c.referenceBytes)} | ${c.seconds.toFixed(2)} s | ${c.phases} |`;
  const details = [
    '### Data set',
    '',
    `A ${gib(DISK_BYTES)} qcow2 disk with ${gib(allocated)} allocated in ${extents.length} extents of 64 KiB to 8 MiB: ` +
      `${gib(fill.randomBytes)} random, ${gib(fill.textBytes)} log-like text, ${mib(fill.zeroBytes)} of written zero blocks ` +
      '(64 KiB blocks, mixed). The raw image for the baselines was made with `qemu-img convert` through the NBD export ' +
      `in ${convertSeconds.toFixed(1)} s (not counted).`,
    '',
    '### Initial sync',
    '',
    `Rate = allocated disk bytes (${gib(allocated)}, what every method must make present in its copy) / wall time ` +
      'until the copy is complete; holes count for nobody. The ratios are therefore ratios of times.',
    '',
    `OSR settings: ${settings}. OSR read ${mib(osr.bytesChanged)} from the source, ` +
      `${osr.bytesChanged === allocated ? 'exactly the allocated bytes' : `the disk has ${mib(allocated)} allocated`}.`,
    '',
    '| method | time | rate | bytes uploaded | notes |',
    '| --- | --- | --- | --- | --- |',
    `| ${osr.method} | ${osr.seconds.toFixed(1)} s | ${rate(allocated, osr.seconds)} | ${mib(osr.uploadedBytes)} (segments) | ` +
      `segments all uploaded after ${osr.transferSeconds?.toFixed(1) ?? '?'} s, in ${osr.slices.slices} transferDisk slices with ` +
      `${osr.slices.gapSeconds.toFixed(2)} s idle between them; activities (first scheduled to last closed): ${osr.phases} |`,
    `| ${pages.method} | ${pages.seconds.toFixed(1)} s | ${rate(allocated, pages.seconds)} | ${mib(pages.uploadedBytes)} | ${pages.detail ?? ''}, read from the raw image |`,
    `| ${pages1.method} | ${pages1.seconds.toFixed(1)} s | ${rate(allocated, pages1.seconds)} | ${mib(pages1.uploadedBytes)} | ${pages1.detail ?? ''} |`,
    `| ${rclone.method} | ${rclone.seconds.toFixed(1)} s | ${rate(allocated, rclone.seconds)} (raw ${rate(rclone.uploadedBytes, rclone.seconds)}) | ${mib(rclone.uploadedBytes)} | ${rclone.detail ?? ''} |`,
    '',
    'CPU seconds per process during each method (from /proc; "outside the benchmark" is the rest of the machine, e.g. other stacks running beside it):',
    '',
    `- ${osr.method}: ${cpu(osrCpu)}`,
    ...(transferCpu && applyCpu
      ? [
          `  - until every segment was uploaded (${transferCpu.wallSeconds.toFixed(1)} s): ${cpu(transferCpu)}`,
          `  - after (${applyCpu.wallSeconds.toFixed(1)} s): ${cpu(applyCpu)}`,
        ]
      : []),
    `- ${pages.method}: ${cpu(pagesCpu)}`,
    `- ${pages1.method}: ${cpu(pages1Cpu)}`,
    `- ${rclone.method}: ${cpu(rcloneCpu)}`,
    '',
    '### Delta cycles',
    '',
    `${mib(CHANGE_BYTES)} (1 % of ${gib(DISK_BYTES)}) written as 64 KiB blocks at distinct random aligned offsets, half random, half text; ` +
      'then `takePoint`, timed until the point is published. Reference: the changed blocks, concatenated in disk order, ' +
      'compressed by zstd level 1 in one frame. The 16 GiB disk holds ' +
      `${mib(bigSync.bytesChanged)} of data and gets the same amount of change.`,
    '',
    '| disk | changed | OSR saw changed | OSR sent | zstd-1 of change | time | activities |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...small.map(deltaRow),
    ...large.map(deltaRow),
    '',
    '### RPO',
    '',
    `Policy: a crash point every ${RPO.crashPointSeconds} s. Writer: ${rpo.writtenMBps.toFixed(2)} MB/s measured ` +
      `(64 KiB blocks, random places, half random, half text). ${rpo.samples} samples, one a second after ${RPO.warmupSeconds} s of warm-up; ` +
      'RPO = wall time minus the instant of the newest published point.',
    '',
    `- p50 ${rpo.p50.toFixed(1)} s, p99 ${rpo.p99.toFixed(1)} s, max ${rpo.max.toFixed(1)} s`,
    `- the status query's own rpoSeconds: p50 ${rpo.statusP50.toFixed(1)} s, p99 ${rpo.statusP99.toFixed(1)} s`,
    `- catalog: ${rpo.points} points published in the window; worst gap (publication minus the previous point's instant) ${rpo.catalogWorst.toFixed(1)} s`,
    `- points' instants ${rpo.meanInterval.toFixed(2)} s apart on average; publication ${rpo.meanLag.toFixed(2)} s after the instant on average`,
    `- mean cycle (freeze to release) ${rpo.cycleSeconds.toFixed(2)} s; ${rpo.meanPhases}`,
    `- CPU seconds over the ${RPO.warmupSeconds + RPO.sampleSeconds} s: ${cpu(rpoCpu)}`,
  ].join('\n');

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

const cleanup = new Cleanup();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`${signal}: stopping and cleaning up`);
    void cleanup.run().finally(() => process.exit(130));
  });
}
void (async () => {
  try {
    await main(cleanup);
  } catch (err) {
    console.error(err);
    process.exitCode = 1;
  } finally {
    say('cleaning up');
    await cleanup.run();
  }
  // Whatever handle a library left open, the run is over.
  process.exit();
})();
