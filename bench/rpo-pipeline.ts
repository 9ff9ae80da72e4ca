// `npm run bench -- --rpo` (issue 16, "RPO at 2-s points"): one machine, a crash point every 2 s,
// first a tiny change (the per-cycle fixed cost shows alone), then 5 MB/s of change (the RPO
// target). Each phase prints RPO p50/p95/p99 sampled every second and where a cycle's time goes,
// read from the workflow history (bench/cycle-breakdown.ts). With OSR_BENCH_BEFORE=<compiled tree>
// (e.g. main built with `npx tsc --outDir`), the same phases run first on that tree's workers in a
// stack of their own, so before and after stand side by side in one run, with ratios and the
// CPU that other processes on the machine used meanwhile. Writes its section of BENCHMARKS.md.
import os from 'node:os';
import path from 'node:path';
import { createManualPolicy, protectUntilFirstPoint } from './manual-protection';
import { startTestMachine } from '../test/helpers/qemu-machine';
import { CpuMeter } from './cpu';
import { cycleBreakdown, formatBreakdown, type CycleBreakdown } from './cycle-breakdown';
import { Cleanup, MiB, projectRoot, secondsSince, startBenchStack, tempDir } from './harness';
import { machineFacts, writeBenchmarksFile, type ReportSection } from './report';
import { measureRpo, type RpoResult } from './rpo';

export const RPO_PIPELINE_SECTION: ReportSection = {
  start: '<!-- bench:rpo2:start (written by `npm run bench -- --rpo`; edit outside the markers) -->',
  end: '<!-- bench:rpo2:end -->',
};

const QUICK = process.env.OSR_BENCH_QUICK === '1';
const PHASES = [
  {
    name: 'tiny change (64 KiB/s)',
    bytesPerSecond: 64 * 1024,
    warmupSeconds: 10,
    sampleSeconds: QUICK ? 20 : 40,
  },
  { name: '5 MB/s', bytesPerSecond: 5e6, warmupSeconds: 15, sampleSeconds: QUICK ? 30 : 90 },
];
const INTERVAL_SECONDS = 2;
const TARGET_P99 = 5;

interface PhaseResult {
  rpo: RpoResult;
  cycles: CycleBreakdown;
  /** Share of the machine's CPU used by processes outside this stack during the phase. */
  otherLoad: number;
}

interface Side {
  label: string;
  phases: PhaseResult[];
}

async function runSide(
  outer: Cleanup,
  label: string,
  workersDir: string | undefined,
  say: (m: string) => void,
): Promise<Side> {
  const cleanup = new Cleanup();
  outer.add(`stop the ${label} stack`, () => cleanup.run());
  try {
    const work = tempDir(cleanup, 'osr-rpo-');
    const stack = await startBenchStack(cleanup, work, { workersDir });
    const { ctx } = stack;
    const meter = new CpuMeter();
    meter.track('bench', process.pid);
    for (const [name, pid] of Object.entries(stack.pids)) meter.track(name, pid);
    const vm = await startTestMachine({ sizes: [256 * MiB] });
    cleanup.add('stop the test machine', () => vm.stop());
    meter.track('qemu-storage-daemon', vm.daemon.pid);
    await createManualPolicy(ctx, 'manual');
    await protectUntilFirstPoint(ctx, 'rpo2', vm, 'manual');
    say(`${label}: protected; workers from ${workersDir ?? 'this tree'}`);
    const phases: PhaseResult[] = [];
    for (const [i, phase] of PHASES.entries()) {
      const before = meter.snapshot();
      const start = performance.now();
      const fromMs = Date.now() + phase.warmupSeconds * 1000;
      const rpo = await measureRpo(ctx, {
        machine: 'rpo2',
        nbd: await vm.disk(),
        bytesPerSecond: phase.bytesPerSecond,
        crashPointSeconds: INTERVAL_SECONDS,
        warmupSeconds: phase.warmupSeconds,
        sampleSeconds: phase.sampleSeconds,
        policy: `points-${i}`,
      });
      const cpu = meter.since(before, start);
      const cycles = await cycleBreakdown(await ctx.client(), 'rpo2', fromMs, Date.now());
      const result: PhaseResult = {
        rpo,
        cycles,
        otherLoad: cpu.other / (cpu.wallSeconds * os.cpus().length),
      };
      phases.push(result);
      say(
        `${label}, ${phase.name}: RPO p50 ${rpo.p50.toFixed(2)} s, p95 ${result.rpo.p95.toFixed(2)} s, p99 ${rpo.p99.toFixed(2)} s, ` +
          `max ${rpo.max.toFixed(2)} s (${rpo.writtenMBps.toFixed(2)} MB/s written; others used ${(100 * result.otherLoad).toFixed(0)} % of the CPU)`,
      );
      say(`  ${formatBreakdown(cycles)}`);
    }
    return { label, phases };
  } finally {
    await cleanup.run();
  }
}

function report(sides: Side[], facts: Awaited<ReturnType<typeof machineFacts>>, seconds: number): string {
  const lines = [
    `Run of ${facts.date} (${Math.round(seconds)} s). ${facts.cores} × ${facts.cpu}; load average ${facts.loadAtStart.toFixed(2)} when it began. ` +
      `One machine (256 MiB qcow2 disk, qemu-storage-daemon), a crash point every ${INTERVAL_SECONDS} s; each side in a stack of its own ` +
      "(Temporal dev server, Azurite on disk, control, cloud applier, one process server), one after the other. RPO = wall time minus the newest point's instant, sampled every second.",
    '',
    "| phase | side | RPO p50 | p95 | p99 (target ≤ 5 s at 5 MB/s) | max | written | cycle period (p99) | freeze → published (p99) | others' CPU |",
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const [i, phase] of PHASES.entries()) {
    for (const side of sides) {
      const p = side.phases[i];
      if (!p) continue;
      const c = p.cycles;
      lines.push(
        `| ${phase.name} | ${side.label} | ${p.rpo.p50.toFixed(2)} s | ${p.rpo.p95.toFixed(2)} s | ${p.rpo.p99.toFixed(2)} s | ${p.rpo.max.toFixed(2)} s | ` +
          `${p.rpo.writtenMBps.toFixed(2)} MB/s | ${c.periodMean.toFixed(2)} s (${c.periodP99.toFixed(2)}) | ${c.lagMean.toFixed(2)} s (${c.lagP99.toFixed(2)}) | ${(100 * p.otherLoad).toFixed(0)} % |`,
      );
    }
  }
  const [before, after] = sides.length === 2 ? sides : [undefined, sides[0]];
  if (before && after) {
    lines.push('', 'Ratios after / before:');
    for (const [i, phase] of PHASES.entries()) {
      const b = before.phases[i];
      const a = after.phases[i];
      if (!a || !b) continue;
      lines.push(
        `- ${phase.name}: RPO p99 ${(a.rpo.p99 / b.rpo.p99).toFixed(2)}×, p50 ${(a.rpo.p50 / b.rpo.p50).toFixed(2)}×, ` +
          `cycle period ${(a.cycles.periodMean / b.cycles.periodMean).toFixed(2)}×`,
      );
    }
  }
  const last = after?.phases[1];
  if (last) {
    lines.push(
      '',
      `Target (p99 ≤ ${TARGET_P99} s at 5 MB/s): ${last.rpo.p99 <= TARGET_P99 ? 'met' : 'missed'} (${last.rpo.p99.toFixed(2)} s).`,
    );
  }
  lines.push(
    '',
    "Where a cycle's time goes (from the workflow histories; per cycle, queue+run seconds of each activity):",
  );
  for (const side of sides)
    for (const [i, phase] of PHASES.entries()) {
      const p = side.phases[i];
      if (p) lines.push(`- ${side.label}, ${phase.name}: ${formatBreakdown(p.cycles)}`);
    }
  return lines.join('\n');
}

export async function runRpoPipeline(outer: Cleanup, say: (m: string) => void): Promise<void> {
  const begin = performance.now();
  const temporalBinary = process.env.OSR_TEMPORAL_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'temporal');
  const facts = await machineFacts(temporalBinary);
  say(`${facts.cores} × ${facts.cpu}, load average ${facts.loadAtStart.toFixed(2)}`);
  const sides: Side[] = [];
  const beforeTree = process.env.OSR_BENCH_BEFORE;
  if (beforeTree) sides.push(await runSide(outer, 'before (main)', path.join(beforeTree, 'workers'), say));
  else say('OSR_BENCH_BEFORE not set: this tree only (set it to a compiled tree of main to compare)');
  sides.push(await runSide(outer, 'after (this tree)', undefined, say));
  const text = report(sides, facts, secondsSince(begin));
  console.log(`\n${text}\n`);
  if (QUICK || process.argv.includes('--no-write')) return say('BENCHMARKS.md left as it is');
  const file = await writeBenchmarksFile(
    process.env.OSR_BENCH_OUT ?? path.join(projectRoot, 'BENCHMARKS.md'),
    text,
    RPO_PIPELINE_SECTION,
  );
  say(`results written to ${file}`);
}
