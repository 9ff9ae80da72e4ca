// `npm run bench -- --churn` (issue 16, "Churn"): one machine under heavy change, 50 MB/s by
// default (Azure Site Recovery's per-machine ceiling is about 54 MB/s), written on this host into
// the machine's qemu-storage-daemon through NBD (a TCG guest cannot write that fast). Reports the
// change rate actually written and the rate of changed blocks the process server read and sent,
// RPO p50/p99/max sampled every second, where a cycle's time goes (from the workflow history) and
// the CPU of each process. On this tree's loopback stack; writes its section of BENCHMARKS.md.
// Flags: --churn-mbps 50 --crash-every 10 --seconds 120 --disk-gib 4 --no-write.
import os from 'node:os';
import path from 'node:path';
import * as machines from '../operations/machines';
import { createManualPolicy, protectUntilFirstPoint } from './manual-protection';
import { startTestMachine } from '../test/helpers/qemu-machine';
import { CpuMeter, formatCpu } from './cpu';
import { cycleBreakdown, formatBreakdown } from './cycle-breakdown';
import { activitySpans, formatPhases, phases, sliceGaps } from './history';
import {
  GiB,
  projectRoot,
  secondsSince,
  sleep,
  startBenchStack,
  tempDir,
  type BenchStack,
  type Cleanup,
} from './harness';
import { machineFacts, writeBenchmarksFile, type ReportSection } from './report';
import { measureRpo } from './rpo';

export const CHURN_SECTION: ReportSection = {
  start: '<!-- bench:churn:start (written by `npm run bench -- --churn`; edit outside the markers) -->',
  end: '<!-- bench:churn:end -->',
};
export const CHURN_WAN_SECTION: ReportSection = {
  start:
    '<!-- bench:churn-wan:start (written by `npm run bench -- --wan --churn`; edit outside the markers) -->',
  end: '<!-- bench:churn-wan:end -->',
};

const TARGET_P99 = 30;
const WRITES_IN_FLIGHT = 8;

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value <= 0)
    throw new Error(
      `bad ${name} ${process.argv[i + 1] ?? ''}: give a positive number, e.g. ${name} ${fallback}`,
    );
  return value;
}

/** On this tree's loopback stack. */
export async function runChurn(cleanup: Cleanup, say: (m: string) => void): Promise<void> {
  const stack = await startBenchStack(cleanup, tempDir(cleanup, 'osr-churn-'));
  const where =
    'Loopback stack (Temporal dev server, Azurite on disk, control, cloud applier, one process server)';
  await measureChurn(cleanup, stack, where, CHURN_SECTION, say);
}

/** On a stack already up (loopback, or the WAN benchmark's two sites); writes `section`. */
export async function measureChurn(
  cleanup: Cleanup,
  stack: BenchStack,
  where: string,
  section: ReportSection,
  say: (m: string) => void,
  /** Bytes sent into the WAN link so far, when there is one. */
  linkBytes?: () => Promise<number>,
): Promise<void> {
  const begin = performance.now();
  const mbps = flag('--churn-mbps', 50);
  const interval = flag('--crash-every', 10);
  const seconds = flag('--seconds', process.env.OSR_BENCH_QUICK === '1' ? 40 : 120);
  const diskBytes = flag('--disk-gib', 4) * GiB;
  const temporalBinary = process.env.OSR_TEMPORAL_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'temporal');
  const facts = await machineFacts(temporalBinary);
  say(`${facts.cores} × ${facts.cpu}, load average ${facts.loadAtStart.toFixed(2)}`);
  const { ctx } = stack;
  const meter = new CpuMeter();
  meter.track('bench (writer)', process.pid);
  for (const [name, pid] of Object.entries(stack.pids)) meter.track(name, pid);
  const vm = await startTestMachine({ sizes: [diskBytes] });
  cleanup.add('stop the test machine', () => vm.stop());
  meter.track('qemu-storage-daemon', vm.daemon.pid);
  await createManualPolicy(ctx, 'manual');
  await protectUntilFirstPoint(ctx, 'churn', vm, 'manual');
  say(`protected (${diskBytes / GiB} GiB empty disk); ${mbps} MB/s of change, a point every ${interval} s`);

  const warmupSeconds = Math.max(20, 2 * interval);
  const before = meter.snapshot();
  const start = performance.now();
  const fromMs = Date.now() + warmupSeconds * 1000;
  const statsAt = async () => (await machines.machineStatus(ctx, 'churn')).stats;
  const rpoRun = measureRpo(ctx, {
    machine: 'churn',
    nbd: await vm.disk(),
    bytesPerSecond: mbps * 1e6,
    crashPointSeconds: interval,
    warmupSeconds,
    sampleSeconds: seconds,
    policy: 'churn',
    writesInFlight: WRITES_IN_FLIGHT,
  });
  await sleep(warmupSeconds * 1000);
  const statsFrom = await statsAt();
  const linkFrom = await linkBytes?.();
  const statsFromMs = performance.now();
  const rpo = await rpoRun;
  const statsTo = await statsAt();
  const linkTo = await linkBytes?.();
  const statsSeconds = secondsSince(statsFromMs);
  const cpu = meter.since(before, start);
  const cycles = await cycleBreakdown(await ctx.client(), 'churn', fromMs, Date.now());
  // Also the activities of a cycle still running at the end (a cycle longer than the window).
  const spans = phases(await activitySpans(await ctx.client(), 'churn'), fromMs, Date.now());
  const slices = sliceGaps(await activitySpans(await ctx.client(), 'churn'), fromMs, Date.now());
  const changedMBps = (statsTo.bytesChanged - statsFrom.bytesChanged) / 1e6 / statsSeconds;
  const sentMBps = (statsTo.bytesSent - statsFrom.bytesSent) / 1e6 / statsSeconds;
  const others = cpu.other / (cpu.wallSeconds * os.cpus().length);

  const verdict = rpo.p99 <= TARGET_P99 ? 'met' : 'missed';
  const lines = [
    `Run of ${facts.date} (${Math.round(secondsSince(begin))} s). ${facts.cores} × ${facts.cpu}; load average ${facts.loadAtStart.toFixed(2)} when it began; ` +
      `processes outside the benchmark used ${(100 * others).toFixed(0)} % of the CPU meanwhile. ${where}; ` +
      `one machine with a ${diskBytes / GiB} GiB qcow2 disk (qemu-storage-daemon), written through NBD by the bench (64 KiB blocks at random places, half random bytes, half text, ${WRITES_IN_FLIGHT} writes in flight); ` +
      `a crash point every ${interval} s; ${warmupSeconds} s of warm-up, then ${seconds} s sampled.`,
    '',
    '| measure | OSR | target | ratio |',
    '| --- | --- | --- | --- |',
    `| change written to the disk | ${rpo.writtenMBps.toFixed(1)} MB/s | ${mbps} MB/s | ${(rpo.writtenMBps / mbps).toFixed(2)}× |`,
    `| changed blocks read / sent by the process server | ${changedMBps.toFixed(1)} / ${sentMBps.toFixed(1)} MB/s | ${mbps} MB/s | ${(changedMBps / mbps).toFixed(2)}× |`,
    ...(linkFrom !== undefined && linkTo !== undefined
      ? [
          `| bytes on the link (all traffic from the primary site) | ${((linkTo - linkFrom) / 1e6 / statsSeconds).toFixed(1)} MB/s | 125 MB/s (1 Gbit/s) | ${((linkTo - linkFrom) / 1e6 / statsSeconds / 125).toFixed(2)}× |`,
        ]
      : []),
    `| RPO p99 (p50, max) | ${rpo.p99.toFixed(1)} s (${rpo.p50.toFixed(1)}, ${rpo.max.toFixed(1)}) | ≤ ${TARGET_P99} s | ${(rpo.p99 / TARGET_P99).toFixed(2)}× (${verdict}) |`,
    `| cycle period mean (p99); freeze → published mean (p99) | ${cycles.periodMean.toFixed(1)} s (${cycles.periodP99.toFixed(1)}); ${cycles.lagMean.toFixed(1)} s (${cycles.lagP99.toFixed(1)}) | interval ${interval} s | ${(cycles.periodMean / interval).toFixed(2)}× |`,
    '',
    `Cycle breakdown (cycles begun and ended in the window): ${formatBreakdown(cycles)}.`,
    '',
    `Activities scheduled in the window and closed by its end (first scheduled → last closed, per type): ${formatPhases(spans) || 'none'}; ${slices.slices} transfer slices closed.`,
    '',
    `CPU seconds: ${formatCpu(cpu, facts.cores)}.`,
  ];
  const text = lines.join('\n');
  console.log(`\n${text}\n`);
  if (process.argv.includes('--no-write')) return say('BENCHMARKS.md left as it is');
  const file = await writeBenchmarksFile(
    process.env.OSR_BENCH_OUT ?? path.join(projectRoot, 'BENCHMARKS.md'),
    text,
    section,
  );
  say(`results written to ${file}`);
}
