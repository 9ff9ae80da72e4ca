// Load run (`npm run bench:load`, issue 7 "Load"): many protected machines with small disks on one
// host, TWO process-server workers polling the same task queue, a policy with a crash point every
// few tens of seconds, and a light writer per machine. It measures, over a steady-state window:
// RPO per machine (from the catalog, exact: wall time minus the instant of the newest published
// point, evaluated every second), each machine's workflow history length across continueAsNew,
// worker RSS / heap over time (from /proc and the workers' heartbeats), cycles done / failed,
// throughput and CPU per cycle; prints a table with ratios against the policy, and writes the
// figures into BENCHMARKS.md between markers (OSR_BENCH_OUT=<file> elsewhere, --no-write not at all).
//
// Flags (all optional): --machines 50 --minutes 10 --warmup-seconds 60 --disk-mib 16 --data-mib 4
// --crash-every 30 --rpo 90 --write-kib-per-second 32 --process-servers 2 --max-cycles-per-run 10
// --heartbeat-seconds 5 --no-write. Run on a compiled tree without touching dist/:
//   npx tsc -p tsconfig.json --outDir .osr/bench-dist && node .osr/bench-dist/bench/load.js --minutes 10
// Everything it starts (Temporal, Azurite, workers, one qemu-storage-daemon per machine) is stopped
// at the end, also on failure or Ctrl-C.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NbdClient } from '../lib/qemu/nbd-client';
import { listServers } from '../lib/observability/server-health';
import * as machines from '../operations/machines';
import { createPolicy } from '../operations/policies';
import { protectWorkflowId, type MachineStatus } from '../shared/contracts/protect-machine';
import { startTestMachine, type TestMachine } from '../test/helpers/qemu-machine';
import { CpuMeter, type CpuSnapshot } from './cpu';
import { cycleBreakdown, formatBreakdown } from './cycle-breakdown';
import { BLOCK_BYTES, fillBlock, pickKind, seededRandom } from './disk-data';
import type { Cleanup } from './harness';
import { MiB, projectRoot, runMain, secondsSince, sleep, startBenchStack, tempDir } from './harness';
import { machineFacts, mib, writeBenchmarksFile, type ReportSection } from './report';
import { percentile } from './rpo';
import { parseOptions } from './load-options';
import { reportLoad, rpoSeries, type MemSample, type PerMachine } from './load-report';
import { eventMix, historyTotals, type HistoryTotals } from './load-history';

export const LOAD_SECTION: ReportSection = {
  start: '<!-- bench:load:start (written by `npm run bench:load`; edit outside the markers) -->',
  end: '<!-- bench:load:end -->',
};

const opts = parseOptions(process.argv.slice(2));
const begin = performance.now();
const say = (msg: string): void => console.log(`[${secondsSince(begin).toFixed(0).padStart(5)} s] ${msg}`);

/** Writes one fresh 64 KiB block at a random aligned place, paced to a mean rate with jitter. */
class LightWriter {
  written = 0;
  #running = true;
  #done: Promise<void> | undefined;
  constructor(
    private readonly nbd: NbdClient,
    private readonly bytesPerSecond: number,
    private readonly seed: number,
  ) {}
  start(): void {
    const rand = seededRandom(this.seed);
    const slots = Math.floor(this.nbd.size / BLOCK_BYTES);
    const pause = (BLOCK_BYTES / this.bytesPerSecond) * 1000;
    this.#done = (async () => {
      await sleep(rand() * pause);
      while (this.#running) {
        const block = Buffer.allocUnsafe(BLOCK_BYTES);
        fillBlock(block, 0, pickKind(rand, 0), rand);
        try {
          await this.nbd.write(Math.floor(rand() * slots) * BLOCK_BYTES, block);
          this.written += BLOCK_BYTES;
        } catch {
          return; // the machine is being stopped
        }
        await sleep(pause * (0.5 + rand()));
      }
    })();
  }
  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
  }
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function main(cleanup: Cleanup): Promise<void> {
  const temporalBinary = process.env.OSR_TEMPORAL_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'temporal');
  const facts = await machineFacts(temporalBinary);
  say(
    `${facts.cores} × ${facts.cpu}, ${facts.ramGiB} GiB, load average ${facts.loadAtStart.toFixed(2)}; ` +
      `${opts.machines} machines × ${opts.diskMiB} MiB, ${opts.processServers} process servers, ` +
      `points every ${opts.crashEvery} s, RPO threshold ${opts.rpo} s, ${opts.minutes} min measured`,
  );
  const work = tempDir(cleanup, 'osr-load-');
  const stack = await startBenchStack(cleanup, work, {
    env: { OSR_HEARTBEAT_SECONDS: String(opts.heartbeatSeconds) },
    processServers: opts.processServers,
  });
  const { ctx, config } = stack;
  const meter = new CpuMeter();
  meter.track('bench (writers)', process.pid);
  for (const [name, pid] of Object.entries(stack.pids)) meter.track(name, pid);
  // Workers only: Temporal and Azurite are measured apart.
  const workerPids: Record<string, number> = Object.fromEntries(
    Object.entries(stack.pids).filter(([name]) => name !== 'temporal' && name !== 'azurite'),
  );
  say(
    `stack up in ${work}: Temporal, Azurite, control, cloud-applier, ${opts.processServers} process servers`,
  );
  await createPolicy(ctx, {
    name: 'load',
    crashPointSeconds: opts.crashEvery,
    appPointSeconds: 0,
    rpoThresholdSeconds: opts.rpo,
    retentionHours: 24,
    keepAllMinutes: 60,
  });

  // --- the machines: one qemu-storage-daemon each, a few MiB of data, then protected ----------------
  const vms: TestMachine[] = [];
  const names: string[] = [];
  const daemonPids: number[] = [];
  for (let i = 0; i < opts.machines; i++) {
    const vm = await startTestMachine({ sizes: [opts.diskMiB * MiB] });
    cleanup.add(`stop machine ${i}`, () => vm.stop());
    vms.push(vm);
    daemonPids.push(vm.daemon.pid);
    names.push(`load-${String(i + 1).padStart(3, '0')}`);
    const nbd = await vm.disk();
    const rand = seededRandom(1000 + i);
    const block = Buffer.allocUnsafe(BLOCK_BYTES);
    const slots = Math.floor(nbd.size / BLOCK_BYTES);
    for (let b = 0; b < (opts.dataMiB * MiB) / BLOCK_BYTES; b++) {
      fillBlock(block, 0, pickKind(rand, 0), rand);
      await nbd.write(Math.floor(rand() * slots) * BLOCK_BYTES, block);
    }
    await nbd.flush();
  }
  say(`${opts.machines} qemu-storage-daemons up, ${opts.dataMiB} MiB written to each`);
  const protectStart = performance.now();
  // Ten protect calls at a time: one by one, 100 machines took 7 minutes to register.
  for (let from = 0; from < vms.length; from += 10) {
    await Promise.all(
      vms.slice(from, from + 10).map((vm, k) =>
        machines.protect(ctx, {
          name: names[from + k] as string,
          qmpSocket: vm.daemon.qmpSocket,
          nbdSocket: vm.daemon.nbdSocket,
          policy: 'load',
          maxCyclesPerRun: opts.maxCyclesPerRun,
        }),
      ),
    );
  }
  const writers = await Promise.all(
    vms.map(async (vm, i) => {
      const w = new LightWriter(await vm.disk(), opts.writeKiBPerSecond * 1024, 7 + i);
      w.start();
      return w;
    }),
  );
  cleanup.add('stop the writers', async () => void (await Promise.all(writers.map((w) => w.stop()))));
  // All protected (first point published) before the steady window starts.
  const statuses = new Map<string, MachineStatus>();
  for (;;) {
    await Promise.all(
      names.map(async (n) => {
        if (statuses.get(n)?.lastPoint) return;
        try {
          statuses.set(n, await machines.machineStatus(ctx, n));
        } catch {
          /* not started yet */
        }
      }),
    );
    const done = names.filter((n) => statuses.get(n)?.lastPoint).length;
    if (done === names.length) break;
    if (secondsSince(protectStart) > 1800)
      throw new Error(`only ${done} of ${names.length} protected after 30 min`);
    await sleep(2000);
  }
  const protectSeconds = secondsSince(protectStart);
  say(`all ${names.length} machines protected (first point each) in ${protectSeconds.toFixed(1)} s`);
  await sleep(opts.warmupSeconds * 1000);

  // --- the steady window ---------------------------------------------------------------------------
  const snapshot = async () =>
    new Map(await Promise.all(names.map(async (n) => [n, await machines.machineStatus(ctx, n)] as const)));
  const startStatus = await snapshot();
  // All machines at once, at both ends, so the span counted is the window's for each of them.
  const historyAll = async () => {
    const client = await ctx.client();
    return new Map<string, HistoryTotals>(
      await Promise.all(names.map(async (n) => [n, await historyTotals(client, n)] as const)),
    );
  };
  const historyFrom = performance.now();
  const startHistory = await historyAll();
  const windowStartWall = Date.now();
  const windowStart = performance.now();
  const cpuStart: CpuSnapshot = meter.snapshot();
  const daemonCpu = (): number =>
    daemonPids.reduce((a, pid) => {
      try {
        const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ').map(Number);
        return a + (((f?.[11] ?? 0) + (f?.[12] ?? 0)) as number) / 100;
      } catch {
        return a;
      }
    }, 0);
  const daemonCpuStart = daemonCpu();
  const mem: MemSample[] = [];
  const historyMax = new Map<string, number>();
  const windowMs = opts.minutes * 60_000;
  let nextHistory = 0;
  while (performance.now() - windowStart < windowMs) {
    const t = secondsSince(windowStart);
    let beats: Awaited<ReturnType<typeof listServers>> = [];
    try {
      beats = await listServers(ctx.vault, config);
    } catch {
      /* a heartbeat list is best effort */
    }
    for (const [name, pid] of Object.entries(workerPids)) {
      const hb = beats.find((b) => b.pid === pid && !b.stale);
      mem.push({
        t,
        name,
        rss: rssOf(pid),
        heap: hb?.heapUsedBytes,
        bytesInFlight: hb?.pipeline?.bytesInFlight,
      });
    }
    for (const name of ['temporal', 'azurite'] as const)
      mem.push({ t, name, rss: rssOf(stack.pids[name] as number) });
    if (t >= nextHistory) {
      nextHistory = t + 60;
      const client = await ctx.client();
      await Promise.all(
        names.map(async (n) => {
          const d = await client.workflow.getHandle(protectWorkflowId(n)).describe();
          historyMax.set(n, Math.max(historyMax.get(n) ?? 0, d.historyLength));
        }),
      );
      const rss = Object.keys(workerPids)
        .map((w) => `${w} ${mib(mem.filter((m) => m.name === w).at(-1)?.rss ?? 0)}`)
        .join(', ');
      say(
        `t=${t.toFixed(0)} s: RSS ${rss}; longest history so far ${Math.max(...historyMax.values())} events`,
      );
    }
    await sleep(opts.heartbeatSeconds * 1000);
  }
  const windowSeconds = secondsSince(windowStart);
  const windowEndWall = Date.now();
  const cpu = meter.since(cpuStart, windowStart);
  const daemonsCpuSeconds = daemonCpu() - daemonCpuStart;
  const endStatus = await snapshot();
  const endHistory = await historyAll();
  const historySeconds = secondsSince(historyFrom);
  const written = writers.reduce((a, w) => a + w.written, 0);

  // --- figures --------------------------------------------------------------------------------------
  const client = await ctx.client();
  const per: PerMachine[] = [];
  for (const n of names) {
    const points = (await ctx.vault.points(n)).map((p) => ({
      instant: Date.parse(p.instant),
      published: Date.parse(p.createdAt),
    }));
    const series = rpoSeries(points, windowStartWall, windowEndWall);
    const history = endHistory.get(n) as HistoryTotals;
    const maxHistory = Math.max(historyMax.get(n) ?? 0, history.longestRun);
    const a = startStatus.get(n) as MachineStatus;
    const b = endStatus.get(n) as MachineStatus;
    per.push({
      name: n,
      rpoMax: Math.max(...series),
      rpoP99: percentile(series, 0.99),
      rpoP50: percentile(series, 0.5),
      cycles: b.stats.cycles - a.stats.cycles,
      failed: b.stats.failedCycles - a.stats.failedCycles,
      runs: history.runs,
      maxHistory,
      eventsPerCycle: history.events / Math.max(1, b.stats.cycles),
      eventsInWindow: history.events - (startHistory.get(n)?.events ?? 0),
      bytesSent: b.stats.bytesSent - a.stats.bytesSent,
      bytesChanged: b.stats.bytesChanged - a.stats.bytesChanged,
      alerts: b.alerts.map((x) => x.kind),
    });
  }
  await Promise.all(writers.map((w) => w.stop()));
  const mix = await eventMix(client, names[0] as string);
  // Where a cycle's time goes (queue = waiting for a worker slot), on a few machines spread out.
  const sampled = names.filter((_, i) => i % Math.ceil(names.length / 4) === 0);
  const breakdowns = await Promise.all(
    sampled.map(
      async (n) =>
        `${n}: ${formatBreakdown(await cycleBreakdown(client, n, windowStartWall, windowEndWall))}`,
    ),
  );
  for (const b of breakdowns) say(b);

  const md = reportLoad({
    opts,
    facts,
    config,
    per,
    mix,
    breakdowns,
    historySeconds,
    mem,
    workerPids,
    cpu,
    windowSeconds,
    written,
    daemonsCpuSeconds,
    protectSeconds,
    totalSeconds: secondsSince(begin),
  });
  const perMachineFile = path.join(os.tmpdir(), `osr-load-${Date.now()}.json`);
  fs.writeFileSync(perMachineFile, JSON.stringify({ opts, per, mem, cpu }, null, 1));
  console.log(`per-machine figures and memory samples: ${perMachineFile}`);
  if (opts.write) {
    const out = process.env.OSR_BENCH_OUT ?? path.join(projectRoot, 'BENCHMARKS.md');
    await writeBenchmarksFile(out, md, LOAD_SECTION);
    console.log(`written to ${out}`);
  } else {
    console.log(`\n${md}`);
  }
}

runMain(main, console.log);
