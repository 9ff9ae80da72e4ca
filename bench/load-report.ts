// The load run's figures (bench/load.ts): RPO series from the catalog, the table of measures
// against the policy, printed and written as the BENCHMARKS.md section.
import type { OsrConfig } from '../lib/config/config';
import type { CpuUse } from './cpu';
import type { EventMix } from './load-history';
import type { Options } from './load-options';
import { mib, type MachineFacts } from './report';
import { percentile } from './rpo';

export interface MemSample {
  t: number;
  name: string;
  rss: number;
  heap?: number;
  bytesInFlight?: number;
}

export interface PerMachine {
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
  /** Events added to all of its runs between the window's start and its end. */
  eventsInWindow: number;
  bytesSent: number;
  bytesChanged: number;
  alerts: string[];
}

export /** RPO of one machine at each whole second of [from, to] (ms), from its catalog. */
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

export const fmt = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '—');

export interface LoadFigures {
  opts: Options;
  facts: MachineFacts;
  config: OsrConfig;
  per: PerMachine[];
  /** The event mix of one machine's current run (actions per cycle). */
  mix: EventMix;
  /** Where a cycle's time went, on a few machines (one line each). */
  breakdowns: string[];
  /** Seconds between the two history counts (the window and the counting itself). */
  historySeconds: number;
  mem: MemSample[];
  workerPids: Record<string, number>;
  cpu: CpuUse;
  windowSeconds: number;
  written: number;
  daemonsCpuSeconds: number;
  protectSeconds: number;
  totalSeconds: number;
}

/** Prints the table of measures and the CPU and alert lines; returns the BENCHMARKS.md section. */
export function reportLoad(figures: LoadFigures): string {
  const { opts, facts, per, workerPids, cpu, windowSeconds, written } = figures;
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
      const rows = figures.mem.filter((m) => m.name === name);
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
  const perHour = per.map((p) => (p.eventsInWindow * 3600) / figures.historySeconds);
  const { mix } = figures;
  const actionsPerCycle = mix.actions / Math.max(1, mix.cycles);
  const cyclesPerHour = 3600 / opts.crashEvery;
  const doneper = (cycles / per.length / windowSeconds) * 3600;
  // Growth at the policy's pace, whether or not this host kept it.
  const eventsPerCycleDone = percentile(perHour, 0.5) / doneper;
  // 1,000 machines: the measured per-cycle costs times the cycles due, against whole cores.
  const psCpuPerCycle = psCpu / Math.max(1, cycles);
  const thousandCores = (psCpuPerCycle * 1000) / opts.crashEvery;

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
      'history growth per machine per hour (measured in the window): median / max',
      `${fmt(percentile(perHour, 0.5), 0)} / ${fmt(Math.max(...perHour), 0)} events`,
      `${fmt(cyclesPerHour, 0)} cycles due per hour, ${fmt(doneper, 0)} done`,
      `${fmt(eventsPerCycleDone, 1)} events/cycle done`,
    ],
    [
      `Temporal actions per cycle (${mix.cycles} cycles of ${per[0]?.name ?? '?'}'s current run)`,
      `${fmt(actionsPerCycle)} (${mix.activities} activities, ${mix.timers} timers, ${mix.upserts} upserts, ${mix.signals} signals in ${mix.events} events)`,
      `per machine: ${fmt(actionsPerCycle / opts.crashEvery, 2)} actions/s`,
      '—',
    ],
    [
      '1,000 machines at this policy (from the per-cycle figures)',
      `${fmt((actionsPerCycle * 1000) / opts.crashEvery, 0)} actions/s; ${fmt((eventsPerCycleDone * cyclesPerHour * 1000) / 1e6, 2)} M events/h; process servers ${fmt(thousandCores, 1)} cores busy`,
      `${fmt(psCpuPerCycle, 3)} process-server CPU s per cycle × ${fmt(1000 / opts.crashEvery, 1)} cycles/s`,
      `${Math.ceil(thousandCores / (0.7 * facts.cores))} hosts of ${facts.cores} cores at 70 %`,
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
    .concat([['qemu-storage-daemons', figures.daemonsCpuSeconds]])
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
  return [
    `Run of ${facts.date} (${Math.round(figures.totalSeconds)} s in all).`,
    '',
    `- CPU: ${facts.cores} × ${facts.cpu}; RAM ${facts.ramGiB} GiB; ${facts.kernel}; load average ${facts.loadAtStart.toFixed(2)} when the run began`,
    `- Node ${facts.node}; ${facts.qemu}; Azurite ${facts.azurite} (data in a folder on disk); ${facts.temporal}`,
    `- Command: \`node <outDir>/bench/load.js --machines ${opts.machines} --minutes ${opts.minutes} --warmup-seconds ${opts.warmupSeconds} --disk-mib ${opts.diskMiB} --data-mib ${opts.dataMiB} --crash-every ${opts.crashEvery} --rpo ${opts.rpo} --write-kib-per-second ${opts.writeKiBPerSecond} --process-servers ${opts.processServers} --max-cycles-per-run ${opts.maxCyclesPerRun}\``,
    `- ${opts.machines} machines, each its own qemu-storage-daemon with one ${opts.diskMiB} MiB qcow2 disk (${opts.dataMiB} MiB of data), a writer of 64 KiB blocks at about ${opts.writeKiBPerSecond} KiB/s each; policy: a crash point every ${opts.crashEvery} s, RPO threshold ${opts.rpo} s; workers: control, cloud-applier, ${opts.processServers} process servers (pipeline.threads ${figures.config.pipeline.threads}, maxBytesInFlight ${mib(figures.config.pipeline.maxBytesInFlight)} each)`,
    `- all ${opts.machines} protected (first point each) ${figures.protectSeconds.toFixed(1)} s after the first protect call; then ${opts.warmupSeconds} s of warm-up; measured window ${windowSeconds.toFixed(0)} s`,
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
    "Where a cycle's time went (from the workflow histories; per cycle, queue+run seconds of each activity):",
    '',
    ...figures.breakdowns.map((b) => `- ${b}`),
    '',
    `Per machine: RPO max ${fmt(Math.min(...allRpo))}–${fmt(Math.max(...allRpo))} s, p99 ${fmt(Math.min(...per.map((p) => p.rpoP99)))}–${fmt(Math.max(...per.map((p) => p.rpoP99)))} s; cycles ${Math.min(...per.map((p) => p.cycles))}–${Math.max(...per.map((p) => p.cycles))}; longest history ${Math.min(...per.map((p) => p.maxHistory))}–${maxHistory} events.`,
  ].join('\n');
}
