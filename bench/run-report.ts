// What `npm run bench` (bench/run.ts) measures, its sizes and targets, and how its results read:
// the headline rows against the targets and the details written into BENCHMARKS.md.
import type { CpuUse } from './cpu';
import type { DeltaCycle } from './delta';
import { BLOCK_BYTES, type Extent, type FillStats } from './disk-data';
import { GiB } from './harness';
import type { CopyResult, OsrSyncResult } from './initial-sync';
import { gib, mib, rate, type Row } from './report';
import type { RpoResult } from './rpo';

/** OSR_BENCH_QUICK=1: a small smoke run of every step (1/16 of the sizes, a 4-machine plan), printed, not written to BENCHMARKS.md. */
export const QUICK = process.env.OSR_BENCH_QUICK === '1';
export const DISK_BYTES = (QUICK ? 0.25 : 4) * GiB;
export const BIG_DISK_BYTES = 4 * DISK_BYTES;
/** 1 % of the 4 GiB disk, in whole 64 KiB blocks; the 16 GiB disk gets the same amount. */
export const CHANGE_BYTES = Math.floor((0.01 * DISK_BYTES) / BLOCK_BYTES) * BLOCK_BYTES;
export const DELTA_ROUNDS = 5;
export const RPO = {
  bytesPerSecond: 5e6,
  crashPointSeconds: 10,
  warmupSeconds: QUICK ? 10 : 20,
  sampleSeconds: QUICK ? 20 : 120,
};
export const TARGETS = { vsUploadPages: 0.8, vsRclone: 2, sentVsZstd: 1.1, bigDiskTime: 1.3, rpoP99: 15 };

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

/** Everything one run measured, as the report needs it. */
export interface RunResults {
  allocated: number;
  extents: Extent[];
  fill: FillStats;
  convertSeconds: number;
  settings: string;
  osr: OsrSyncResult;
  osrCpu: CpuUse;
  transferCpu: CpuUse | undefined;
  applyCpu: CpuUse | undefined;
  pages: CopyResult;
  pagesCpu: CpuUse;
  pages1: CopyResult;
  pages1Cpu: CpuUse;
  /** Undefined when rclone is not installed (`rcloneMissing` says so). */
  rclone: CopyResult | undefined;
  rcloneCpu: CpuUse | undefined;
  rcloneMissing: string | undefined;
  bigSync: OsrSyncResult;
  small: DeltaCycle[];
  large: DeltaCycle[];
  rpo: RpoResult;
  rpoCpu: CpuUse;
  cpu: (use: CpuUse) => string;
}

/** The headline ratios against the targets. */
export function headlineRows(r: RunResults): Row[] {
  const { allocated, osr, pages, pages1, rclone, small, large, rpo } = r;
  const sent = small.reduce((a, c) => a + c.sentBytes, 0);
  const reference = small.reduce((a, c) => a + c.referenceBytes, 0);
  const smallTime = median(small.map((c) => c.seconds));
  const largeTime = median(large.map((c) => c.seconds));
  const covered = (r: { seconds: number }) => `${rate(allocated, r.seconds)} (${r.seconds.toFixed(1)} s)`;
  return [
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
    rclone
      ? {
          measure: 'initial sync vs rclone copy',
          osr: covered(osr),
          reference: covered(rclone),
          ratio: rclone.seconds / osr.seconds,
          target: `≥ ${TARGETS.vsRclone}×`,
          met: rclone.seconds / osr.seconds >= TARGETS.vsRclone,
        }
      : {
          measure: 'initial sync vs rclone copy',
          osr: covered(osr),
          reference: `not run: ${r.rcloneMissing ?? 'rclone unavailable'}`,
          target: `≥ ${TARGETS.vsRclone}×`,
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
}

/** The details section of BENCHMARKS.md: data set, initial sync, delta cycles, RPO. */
export function detailsMarkdown(r: RunResults): string {
  return [...dataSetLines(r), '', ...initialSyncLines(r), '', ...deltaLines(r), '', ...rpoLines(r)].join(
    '\n',
  );
}

function dataSetLines({ allocated, extents, fill, convertSeconds }: RunResults): string[] {
  return [
    '### Data set',
    '',
    `A ${gib(DISK_BYTES)} qcow2 disk with ${gib(allocated)} allocated in ${extents.length} extents of 64 KiB to 8 MiB: ` +
      `${gib(fill.randomBytes)} random, ${gib(fill.textBytes)} log-like text, ${mib(fill.zeroBytes)} of written zero blocks ` +
      '(64 KiB blocks, mixed). The raw image for the baselines was made with `qemu-img convert` through the NBD export ' +
      `in ${convertSeconds.toFixed(1)} s (not counted).`,
  ];
}

function initialSyncLines(r: RunResults): string[] {
  const { allocated, settings, osr, osrCpu, transferCpu, applyCpu, cpu } = r;
  const { pages, pagesCpu, pages1, pages1Cpu, rclone, rcloneCpu } = r;
  return [
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
    rclone
      ? `| ${rclone.method} | ${rclone.seconds.toFixed(1)} s | ${rate(allocated, rclone.seconds)} (raw ${rate(rclone.uploadedBytes, rclone.seconds)}) | ${mib(rclone.uploadedBytes)} | ${rclone.detail ?? ''} |`
      : `| rclone copy of the raw image | — | — | — | not run: ${r.rcloneMissing ?? 'rclone unavailable'} |`,
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
    ...(rclone && rcloneCpu ? [`- ${rclone.method}: ${cpu(rcloneCpu)}`] : []),
  ];
}

function deltaLines({ bigSync, small, large }: RunResults): string[] {
  const deltaRow = (c: DeltaCycle) =>
    `| ${gib(c.diskBytes)} | ${mib(c.changedBytes)} | ${mib(c.bytesChanged)} | ${mib(c.sentBytes)} | ${mib(c.referenceBytes)} | ${c.seconds.toFixed(2)} s | ${c.phases} |`;
  return [
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
  ];
}

function rpoLines({ rpo, rpoCpu, cpu }: RunResults): string[] {
  return [
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
  ];
}
