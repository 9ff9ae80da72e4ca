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
import { BLOCK_BYTES, fillBlock, pickKind, seededRandom } from './disk-data';
import { Cleanup, MiB, projectRoot, secondsSince, sleep, startBenchStack, tempDir } from './harness';
import { machineFacts, mib, writeBenchmarksFile, type ReportSection } from './report';
import { percentile } from './rpo';

export const LOAD_SECTION: ReportSection = {
  start: '<!-- bench:load:start (written by `npm run bench:load`; edit outside the markers) -->',
  end: '<!-- bench:load:end -->',
};

interface Options {
  machines: number;
  minutes: number;
  warmupSeconds: number;
  diskMiB: number;
  dataMiB: number;
  crashEvery: number;
  rpo: number;
  writeKiBPerSecond: number;
  processServers: number;
  maxCyclesPerRun: number;
  heartbeatSeconds: number;
  write: boolean;
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    machines: 50,
    minutes: 10,
    warmupSeconds: 60,
    diskMiB: 16,
    dataMiB: 4,
    crashEvery: 30,
    rpo: 90,
    writeKiBPerSecond: 32,
    processServers: 2,
    // Lower than the product's 100 so a 10-minute window sees runs roll over (continueAsNew); the
    // per-cycle event count it reports projects the run length at any setting.
    maxCyclesPerRun: 10,
    heartbeatSeconds: 5,
    write: true,
  };
  const keys: Record<string, keyof Options> = {
    '--machines': 'machines',
    '--minutes': 'minutes',
    '--warmup-seconds': 'warmupSeconds',
    '--disk-mib': 'diskMiB',
    '--data-mib': 'dataMiB',
    '--crash-every': 'crashEvery',
    '--rpo': 'rpo',
    '--write-kib-per-second': 'writeKiBPerSecond',
    '--process-servers': 'processServers',
    '--max-cycles-per-run': 'maxCyclesPerRun',
    '--heartbeat-seconds': 'heartbeatSeconds',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--no-write') {
      o.write = false;
      continue;
    }
    if (arg === '--help') {
      console.log(`flags: ${Object.keys(keys).join(' ')} --no-write`);
      process.exit(0);
    }
    const key = keys[arg];
    const value = Number(argv[i + 1]);
    if (!key || !Number.isFinite(value) || value <= 0) {
      console.error(`bad flag ${arg} ${argv[i + 1] ?? ''}; flags: ${Object.keys(keys).join(' ')} --no-write`);
      process.exit(2);
    }
    (o as unknown as Record<string, number>)[key] = value;
    i++;
  }
  if (o.dataMiB > o.diskMiB) o.dataMiB = o.diskMiB;
  return o;
}

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

interface MemSample {
  t: number;
  name: string;
  rss: number;
  heap?: number;
  bytesInFlight?: number;
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** RPO of one machine at each whole second of [from, to] (ms), from its catalog. */
function rpoSeries(
  points: Array<{ instant: number; published: number }>,
  from: number,
  to: number,
): number[] {
  const sorted = [...points].sort((a, b) => a.published - b.published);
  const out: number[] = [];
  let k = -1;
  let newestInstant = Number.NaN;
  for (let t = from; t <= to; t += 1000) {
    while (k + 1 < sorted.length && (sorted[k + 1] as { published: number }).published <= t) {
      k++;
      newestInstant = Math.max(
        Number.isNaN(newestInstant) ? -Infinity : newestInstant,
        (sorted[k] as { instant: number }).instant,
      );
    }
    if (!Number.isNaN(newestInstant)) out.push((t - newestInstant) / 1000);
  }
  return out;
}

const fmt = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '—');

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
  for (const [i, vm] of vms.entries()) {
    await machines.protect(ctx, {
      name: names[i] as string,
      qmpSocket: vm.daemon.qmpSocket,
      nbdSocket: vm.daemon.nbdSocket,
      policy: 'load',
      maxCyclesPerRun: opts.maxCyclesPerRun,
    });
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
  const written = writers.reduce((a, w) => a + w.written, 0);

  // --- figures --------------------------------------------------------------------------------------
  const client = await ctx.client();
  interface PerMachine {
    name: string;
    rpoMax: number;
    rpoP99: number;
    rpoP50: number;
    cycles: number;
    failed: number;
    runs: number;
    maxHistory: number;
    /** All events of all runs over all cycles since protection. */
    eventsPerCycle: number;
    bytesSent: number;
    bytesChanged: number;
    alerts: string[];
  }
  const per: PerMachine[] = [];
  for (const n of names) {
    const points = (await ctx.vault.points(n)).map((p) => ({
      instant: Date.parse(p.instant),
      published: Date.parse(p.createdAt),
    }));
    const series = rpoSeries(points, windowStartWall, windowEndWall);
    let runs = 0;
    let maxHistory = historyMax.get(n) ?? 0;
    let events = 0;
    for await (const run of client.workflow.list({ query: `WorkflowId = '${protectWorkflowId(n)}'` })) {
      runs++;
      const length =
        run.historyLength ||
        (await client.workflow.getHandle(run.workflowId, run.runId).describe()).historyLength;
      events += length;
      maxHistory = Math.max(maxHistory, length);
    }
    const a = startStatus.get(n) as MachineStatus;
    const b = endStatus.get(n) as MachineStatus;
    per.push({
      name: n,
      rpoMax: Math.max(...series),
      rpoP99: percentile(series, 0.99),
      rpoP50: percentile(series, 0.5),
      cycles: b.stats.cycles - a.stats.cycles,
      failed: b.stats.failedCycles - a.stats.failedCycles,
      runs,
      maxHistory,
      eventsPerCycle: events / Math.max(1, b.stats.cycles),
      bytesSent: b.stats.bytesSent - a.stats.bytesSent,
      bytesChanged: b.stats.bytesChanged - a.stats.bytesChanged,
      alerts: b.alerts.map((x) => x.kind),
    });
  }
  await Promise.all(writers.map((w) => w.stop()));

  const allRpo = per.flatMap((p) => [p.rpoMax]);
  const cycles = per.reduce((a, p) => a + p.cycles, 0);
  const failed = per.reduce((a, p) => a + p.failed, 0);
  const sent = per.reduce((a, p) => a + p.bytesSent, 0);
  const changed = per.reduce((a, p) => a + p.bytesChanged, 0);
  const overThreshold = per.filter((p) => p.rpoMax > opts.rpo);
  const worst = [...per].sort((a, b) => b.rpoMax - a.rpoMax)[0] as PerMachine;
  const byName = cpu.byName;
  const psNames = Object.keys(workerPids).filter((w) => w.startsWith('process-server'));
  const psCpu = psNames.reduce((a, w) => a + (byName[w] ?? 0), 0);
  const memRows = Object.keys(workerPids)
    .concat(['temporal', 'azurite'])
    .map((name) => {
      const rows = mem.filter((m) => m.name === name);
      const third = Math.max(1, Math.floor(rows.length / 3));
      const firstThird = rows.slice(0, third);
      const lastThird = rows.slice(-third);
      const maxOf = (xs: MemSample[], f: (m: MemSample) => number | undefined) =>
        Math.max(0, ...xs.map((m) => f(m) ?? 0));
      return {
        name,
        rssFirst: maxOf(firstThird, (m) => m.rss),
        rssLast: maxOf(lastThird, (m) => m.rss),
        rssMax: maxOf(rows, (m) => m.rss),
        heapFirst: maxOf(firstThird, (m) => m.heap),
        heapLast: maxOf(lastThird, (m) => m.heap),
        heapMax: maxOf(rows, (m) => m.heap),
        inFlightMax: maxOf(rows, (m) => m.bytesInFlight),
      };
    });
  const maxHistory = Math.max(...per.map((p) => p.maxHistory));
  const expectedCycles = (opts.machines * windowSeconds) / opts.crashEvery;

  const rows: Array<[string, string, string, string]> = [
    [
      'RPO max over machines (worst machine)',
      `${fmt(worst.rpoMax)} s (${worst.name})`,
      `threshold ${opts.rpo} s`,
      `${fmt(worst.rpoMax / opts.rpo, 2)}×`,
    ],
    [
      'RPO p99 per machine: median / max',
      `${fmt(
        percentile(
          per.map((p) => p.rpoP99),
          0.5,
        ),
      )} / ${fmt(Math.max(...per.map((p) => p.rpoP99)))} s`,
      `threshold ${opts.rpo} s`,
      `${fmt(Math.max(...per.map((p) => p.rpoP99)) / opts.rpo, 2)}×`,
    ],
    [
      'RPO p50 per machine: median',
      `${fmt(
        percentile(
          per.map((p) => p.rpoP50),
          0.5,
        ),
      )} s`,
      `interval ${opts.crashEvery} s`,
      `${fmt(
        percentile(
          per.map((p) => p.rpoP50),
          0.5,
        ) / opts.crashEvery,
        2,
      )}×`,
    ],
    [
      'machines over the RPO threshold',
      `${overThreshold.length} of ${per.length}`,
      '0',
      overThreshold.length === 0 ? 'held' : 'MISSED',
    ],
    [
      'cycles done / failed in the window',
      `${cycles} / ${failed}`,
      `${fmt(expectedCycles, 0)} due (1 per interval)`,
      `${fmt(cycles / expectedCycles, 2)}×`,
    ],
    [
      'workflow history, longest run of any machine',
      `${maxHistory} events (runs per machine ${Math.min(...per.map((p) => p.runs))}–${Math.max(...per.map((p) => p.runs))})`,
      `continueAsNew every ${opts.maxCyclesPerRun} cycles or 5000 events`,
      `${fmt(maxHistory / 5000, 2)} of 5000`,
    ],
    ...memRows
      .filter((m) => m.name in workerPids)
      .map(
        (m) =>
          [
            `${m.name} RSS first third → last third (max); heap`,
            `${mib(m.rssFirst)} → ${mib(m.rssLast)} (${mib(m.rssMax)}); heap ${mib(m.heapFirst)} → ${mib(m.heapLast)}`,
            'bounded: last ≤ 1.2 × first',
            `${fmt(m.rssLast / Math.max(1, m.rssFirst), 2)}×`,
          ] as [string, string, string, string],
      ),
    [
      'history events per cycle (all runs / all cycles), median',
      `${fmt(
        percentile(
          per.map((p) => p.eventsPerCycle),
          0.5,
        ),
      )} events`,
      `at the product's 100 cycles per run: ${fmt(
        Math.min(
          5000,
          100 *
            percentile(
              per.map((p) => p.eventsPerCycle),
              0.5,
            ),
        ),
        0,
      )} events`,
      '—',
    ],
    [
      'change written / sent to storage',
      `${mib(written)} written; ${mib(changed)} changed blocks read, ${mib(sent)} sent`,
      `${fmt(written / windowSeconds / 1024, 0)} KiB/s written`,
      `${fmt(sent / Math.max(1, changed), 2)} sent/changed`,
    ],
    [
      'CPU per cycle (process servers / all OSR + storage + Temporal)',
      `${fmt(psCpu / Math.max(1, cycles), 3)} / ${fmt((cpu.machine - cpu.other) / Math.max(1, cycles), 3)} CPU s`,
      `machine busy ${fmt(cpu.machine, 0)} of ${fmt(cpu.wallSeconds * facts.cores, 0)} CPU s`,
      `${fmt(cpu.machine / (cpu.wallSeconds * facts.cores), 2)} busy`,
    ],
  ];
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i]?.length ?? 0), 8));
  console.log('');
  console.log(
    ['measure', 'OSR', 'reference', 'ratio'].map((h, i) => h.padEnd(widths[i] as number)).join('  '),
  );
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i] as number)).join('  '));
  const cpuLine = Object.entries(byName)
    .concat([['qemu-storage-daemons', daemonsCpuSeconds]])
    .filter(([, s]) => s >= 0.05)
    .sort((a, b) => b[1] - a[1])
    .map(([n, s]) => `${n} ${s.toFixed(1)}`)
    .join(', ');
  console.log(
    `\nCPU seconds over the ${windowSeconds.toFixed(0)} s window: ${cpuLine}; other processes ${cpu.other.toFixed(1)}`,
  );
  const alertCounts: Record<string, number> = {};
  for (const p of per) for (const k of p.alerts) alertCounts[k] = (alertCounts[k] ?? 0) + 1;
  console.log(`alerts standing at the end: ${JSON.stringify(alertCounts)}`);

  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const md = [
    `Run of ${facts.date} (${Math.round(secondsSince(begin))} s in all).`,
    '',
    `- CPU: ${facts.cores} × ${facts.cpu}; RAM ${facts.ramGiB} GiB; ${facts.kernel}; load average ${facts.loadAtStart.toFixed(2)} when the run began`,
    `- Node ${facts.node}; ${facts.qemu}; Azurite ${facts.azurite} (data in a folder on disk); ${facts.temporal}`,
    `- Command: \`node <outDir>/bench/load.js --machines ${opts.machines} --minutes ${opts.minutes} --warmup-seconds ${opts.warmupSeconds} --disk-mib ${opts.diskMiB} --data-mib ${opts.dataMiB} --crash-every ${opts.crashEvery} --rpo ${opts.rpo} --write-kib-per-second ${opts.writeKiBPerSecond} --process-servers ${opts.processServers} --max-cycles-per-run ${opts.maxCyclesPerRun}\``,
    `- ${opts.machines} machines, each its own qemu-storage-daemon with one ${opts.diskMiB} MiB qcow2 disk (${opts.dataMiB} MiB of data), a writer of 64 KiB blocks at about ${opts.writeKiBPerSecond} KiB/s each; policy: a crash point every ${opts.crashEvery} s, RPO threshold ${opts.rpo} s; workers: control, cloud-applier, ${opts.processServers} process servers (pipeline.threads ${config.pipeline.threads}, maxBytesInFlight ${mib(config.pipeline.maxBytesInFlight)} each)`,
    `- all ${opts.machines} protected (first point each) ${protectSeconds.toFixed(1)} s after the first protect call; then ${opts.warmupSeconds} s of warm-up; measured window ${windowSeconds.toFixed(0)} s`,
    `- processes outside the benchmark used ${cpu.other.toFixed(0)} of the ${(cpu.wallSeconds * facts.cores).toFixed(0)} CPU seconds of the window`,
    '',
    '| measure | OSR | reference | ratio |',
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
    '',
    `CPU seconds over the window: ${cpuLine}; other processes ${cpu.other.toFixed(1)}.`,
    '',
    `Alerts standing at the end: ${
      Object.entries(alertCounts)
        .map(([k, v]) => `${k} ×${v}`)
        .join(', ') || 'none'
    }.`,
    '',
    'Memory over the window (max of each third: first → last; max of the window):',
    '',
    ...memRows.map(
      (m) =>
        `- ${m.name}: RSS ${mib(m.rssFirst)} → ${mib(m.rssLast)} (max ${mib(m.rssMax)})` +
        (m.heapMax ? `; heap used ${mib(m.heapFirst)} → ${mib(m.heapLast)} (max ${mib(m.heapMax)})` : '') +
        (m.name.startsWith('process-server') ? `; pipeline bytes in flight max ${mib(m.inFlightMax)}` : ''),
    ),
    '',
    `Per machine: RPO max ${fmt(Math.min(...allRpo))}–${fmt(Math.max(...allRpo))} s, p99 ${fmt(Math.min(...per.map((p) => p.rpoP99)))}–${fmt(Math.max(...per.map((p) => p.rpoP99)))} s; cycles ${Math.min(...per.map((p) => p.cycles))}–${Math.max(...per.map((p) => p.cycles))}; longest history ${Math.min(...per.map((p) => p.maxHistory))}–${maxHistory} events.`,
  ].join('\n');
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

const cleanup = new Cleanup();
let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${signal}: stopping everything the load run started…`);
    void cleanup.run().then(() => process.exit(130));
  });
}
main(cleanup)
  .then(() => cleanup.run())
  .then(() => process.exit(0))
  .catch(async (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    await cleanup.run();
    process.exit(1);
  });
