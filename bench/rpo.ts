// RPO under a steady write workload: the machine gets a policy with a crash point every 10 s, a
// writer changes 64 KiB blocks at random places at a steady rate, and the RPO is sampled every
// second: wall time now minus the instant of the newest published point. The status query's own
// rpoSeconds is recorded beside it, and the catalog gives the worst case between samples.
import type { NbdClient } from '../lib/qemu/nbd-client';
import * as machines from '../operations/machines';
import type { ControlContext } from '../operations/context';
import { createPolicy } from '../operations/policies';
import { BLOCK_BYTES, fillBlock, pickKind, seededRandom } from './disk-data';
import { activitySpans, type ActivitySpan } from './history';
import { sleep } from './harness';

export interface RpoOptions {
  machine: string;
  nbd: NbdClient;
  bytesPerSecond: number;
  crashPointSeconds: number;
  warmupSeconds: number;
  sampleSeconds: number;
  /** The policy to create and switch to (default bench-rpo-<interval>s). */
  policy?: string;
  /** Writes outstanding at once (default 1; more to reach tens of MB/s through NBD). */
  writesInFlight?: number;
}

export interface RpoResult {
  samples: number;
  /** From wall time minus the newest point's instant, at each sample. */
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** The same from the status query's rpoSeconds. */
  statusP50: number;
  statusP99: number;
  /** Largest gap the catalog shows: a point's publication minus the previous point's instant. */
  catalogWorst: number;
  points: number;
  /** Mean seconds between the instants of consecutive points, and from instant to publication. */
  meanInterval: number;
  meanLag: number;
  writtenMBps: number;
  /** Mean seconds per cycle phase over the sampled window. */
  cycleSeconds: number;
  meanPhases: string;
}

/** Nearest-rank percentile of `values` (p in 0..1). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] as number;
}

/** Writes fresh 64 KiB blocks at random aligned offsets, paced to `bytesPerSecond`, by
 *  `inFlight` loops sharing the pace. */
class SteadyWriter {
  written = 0;
  #running = true;
  #done: Promise<void> | undefined;

  constructor(
    private readonly nbd: NbdClient,
    private readonly bytesPerSecond: number,
    private readonly seed: number,
    private readonly inFlight = 1,
  ) {}

  start(): void {
    const slots = Math.floor(this.nbd.size / BLOCK_BYTES);
    const begin = performance.now();
    let claimed = 0;
    const loop = async (rand: () => number) => {
      while (this.#running) {
        const due = (this.bytesPerSecond * (performance.now() - begin)) / 1000;
        if (claimed + BLOCK_BYTES > due) {
          await sleep(5);
          continue;
        }
        claimed += BLOCK_BYTES;
        const block = Buffer.allocUnsafe(BLOCK_BYTES);
        fillBlock(block, 0, pickKind(rand, 0), rand);
        await this.nbd.write(Math.floor(rand() * slots) * BLOCK_BYTES, block);
        this.written += BLOCK_BYTES;
      }
    };
    this.#done = Promise.all(
      Array.from({ length: this.inFlight }, (_, i) => loop(seededRandom(this.seed + i))),
    ).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
  }
}

export async function measureRpo(ctx: ControlContext, o: RpoOptions): Promise<RpoResult> {
  const policy = o.policy ?? `bench-rpo-${o.crashPointSeconds}s`;
  await createPolicy(ctx, {
    name: policy,
    crashPointSeconds: o.crashPointSeconds,
    appPointSeconds: 0,
    rpoThresholdSeconds: 60,
    retentionHours: 1,
    keepAllMinutes: 60,
  });
  const writer = new SteadyWriter(o.nbd, o.bytesPerSecond, 0x5eed, o.writesInFlight);
  writer.start();
  try {
    await machines.changePolicy(ctx, o.machine, policy);
    await sleep(o.warmupSeconds * 1000);
    const fromWall = Date.now();
    const writtenAtStart = writer.written;
    const wall: number[] = [];
    const reported: number[] = [];
    const sampleStart = performance.now();
    for (let i = 0; i < o.sampleSeconds; i++) {
      // Sample on a fixed one-second grid, whatever a query costs.
      await sleep(Math.max(0, sampleStart + i * 1000 - performance.now()));
      const status = await machines.machineStatus(ctx, o.machine);
      const now = Date.now();
      if (!status.lastPoint) continue;
      wall.push((now - Date.parse(status.lastPoint.instant)) / 1000);
      if (status.rpoSeconds !== undefined) reported.push(status.rpoSeconds);
    }
    const toWall = Date.now();
    const writtenMBps = (writer.written - writtenAtStart) / 1e6 / ((toWall - fromWall) / 1000);
    await writer.stop();

    const points = (await ctx.vault.points(o.machine)).filter(
      (p) => Date.parse(p.createdAt) >= fromWall && Date.parse(p.createdAt) <= toWall,
    );
    const all = await ctx.vault.points(o.machine);
    let catalogWorst = 0;
    const intervals: number[] = [];
    const lags: number[] = [];
    for (const p of points) {
      const i = all.findIndex((x) => x.id === p.id);
      const prev = i > 0 ? all[i - 1] : undefined;
      lags.push((Date.parse(p.createdAt) - Date.parse(p.instant)) / 1000);
      if (!prev) continue;
      catalogWorst = Math.max(catalogWorst, (Date.parse(p.createdAt) - Date.parse(prev.instant)) / 1000);
      intervals.push((Date.parse(p.instant) - Date.parse(prev.instant)) / 1000);
    }
    const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN);
    const spans = await activitySpans(await ctx.client(), o.machine);
    const { cycleSeconds, meanPhases } = cycleBreakdown(spans, fromWall, toWall);
    return {
      samples: wall.length,
      p50: percentile(wall, 0.5),
      p95: percentile(wall, 0.95),
      p99: percentile(wall, 0.99),
      max: Math.max(...wall),
      statusP50: percentile(reported, 0.5),
      statusP99: percentile(reported, 0.99),
      catalogWorst,
      points: points.length,
      meanInterval: mean(intervals),
      meanLag: mean(lags),
      writtenMBps,
      cycleSeconds,
      meanPhases,
    };
  } finally {
    await writer.stop();
  }
}

// Mean time per activity type over the cycles that ran in the window, and the mean cycle length
// (freezePoint to releasePoint).
function cycleBreakdown(
  spans: readonly ActivitySpan[],
  fromMs: number,
  toMs: number,
): { cycleSeconds: number; meanPhases: string } {
  const window = spans.filter(
    (s) => s.scheduledMs >= fromMs && s.scheduledMs <= toMs && s.closedMs !== undefined,
  );
  const freezes = window.filter((s) => s.type === 'freezePoint');
  const releases = window.filter((s) => s.type === 'releasePoint');
  const cycles: number[] = [];
  for (const f of freezes) {
    const r = releases.find((x) => x.scheduledMs > f.scheduledMs);
    if (r?.closedMs !== undefined) cycles.push((r.closedMs - f.scheduledMs) / 1000);
  }
  const types = [
    'freezePoint',
    'ensureReplicaDisk',
    'transferDisk',
    'applyCycle',
    'publishPoint',
    'releasePoint',
    'deleteCycleSegments',
    'pruneRetention',
  ];
  const n = Math.max(1, freezes.length);
  const parts = types
    .map((t) => {
      const total = window
        .filter((s) => s.type === t)
        .reduce((a, s) => a + ((s.closedMs ?? s.scheduledMs) - s.scheduledMs), 0);
      return total > 0 ? `${t} ${(total / n / 1000).toFixed(2)} s` : undefined;
    })
    .filter((x): x is string => x !== undefined);
  const mean = cycles.length ? cycles.reduce((a, b) => a + b, 0) / cycles.length : Number.NaN;
  return { cycleSeconds: mean, meanPhases: `${freezes.length} cycles; per cycle: ${parts.join(', ')}` };
}
