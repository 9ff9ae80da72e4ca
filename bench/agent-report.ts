// The agent benchmark's rows and its generated part of BENCHMARKS.md.
import { WRITE_BYTES, type WorkloadResult } from './agent-workload';
import { markdownTable, mib, type ReportSection, type Row } from './report';

export const AGENT_SECTION: ReportSection = {
  start: '<!-- bench:agent:start (written by `npm run bench -- --agent`; edit outside the markers) -->',
  end: '<!-- bench:agent:end -->',
};

export interface AgentResults {
  /** (a) the raw disk, the agent idle; (b) through the agent's stack, tracking and points. */
  raw: WorkloadResult;
  tracked: WorkloadResult;
  /** (c) through the agent's stack with protection paused: no point held, nothing sent. */
  stackOnly?: WorkloadResult;
  /** Bytes both ways at the proxy between agent and process server over (b) and its last point. */
  wire: number;
  /** Bytes of the segments (zstd, encrypted) stored for the same points. */
  stored: number;
  /** Bytes the workload wrote in (b). */
  changed: number;
  points: number;
  segments: number;
}

const ms = (x: number): string => `${x.toFixed(2)} ms`;

export function agentRows(r: AgentResults): Row[] {
  const overhead = r.tracked.meanMs / r.raw.meanMs;
  return [
    {
      measure: 'write latency, mean (64 KiB O_DSYNC)',
      osr: ms(r.tracked.meanMs),
      reference: `${ms(r.raw.meanMs)} raw disk`,
      ratio: overhead,
      target: '≤ 1.05× (overhead < 5 %)',
      met: overhead <= 1.05,
    },
    {
      measure: 'write latency, p50',
      osr: ms(r.tracked.p50Ms),
      reference: ms(r.raw.p50Ms),
      ratio: r.tracked.p50Ms / r.raw.p50Ms,
    },
    {
      measure: 'write latency, p99',
      osr: ms(r.tracked.p99Ms),
      reference: ms(r.raw.p99Ms),
      ratio: r.tracked.p99Ms / r.raw.p99Ms,
    },
    ...(r.stackOnly
      ? [
          {
            measure: `(c) write latency, mean, paused (a snapshot held ${pct(r.stackOnly.snapshotHeld)} of it)`,
            osr: ms(r.stackOnly.meanMs),
            reference: `${ms(r.raw.meanMs)} raw disk`,
            ratio: r.stackOnly.meanMs / r.raw.meanMs,
          },
          {
            measure: '(c) write latency, p99, paused',
            osr: ms(r.stackOnly.p99Ms),
            reference: ms(r.raw.p99Ms),
            ratio: r.stackOnly.p99Ms / r.raw.p99Ms,
          },
        ]
      : []),
    {
      measure: 'a point snapshot held (share of (b))',
      osr: pct(r.tracked.snapshotHeld),
      reference: '—',
    },
    {
      measure: 'write rate achieved (5 MB/s asked)',
      osr: mbs(r.tracked),
      reference: mbs(r.raw),
      ratio: r.tracked.seconds > 0 ? r.raw.seconds / r.tracked.seconds : undefined,
    },
    {
      measure: 'writes behind their slot (pace not kept)',
      osr: `${r.tracked.late} of ${r.tracked.writes}`,
      reference: `${r.raw.late} of ${r.raw.writes}`,
    },
    {
      measure: 'agent RSS, peak (mean)',
      osr: `${mib(r.tracked.agentRssPeak)} (${mib(r.tracked.agentRssMean)})`,
      reference: `idle ${mib(r.raw.agentRssPeak)} (${mib(r.raw.agentRssMean)})`,
      ratio: r.tracked.agentRssPeak / (64 * 1024 ** 2),
      target: '< 64 MiB',
      met: r.tracked.agentRssPeak < 64 * 1024 ** 2,
    },
    {
      measure: 'agent RSS high-water mark (its life, initial sync included)',
      osr: mib(r.tracked.agentRssHwm),
      reference: '—',
      ratio: r.tracked.agentRssHwm / (64 * 1024 ** 2),
      target: '< 64 MiB',
      met: r.tracked.agentRssHwm < 64 * 1024 ** 2,
    },
    {
      measure: 'agent CPU (share of the guest vCPU)',
      osr: `${r.tracked.agentCpuSeconds.toFixed(1)} s in ${r.tracked.seconds.toFixed(0)} s (${pct(r.tracked.agentCpuSeconds / r.tracked.seconds)})`,
      reference: `idle ${r.raw.agentCpuSeconds.toFixed(1)} s (${pct(r.raw.agentCpuSeconds / r.raw.seconds)})`,
    },
    {
      measure: 'guest vCPU busy',
      osr: pct(r.tracked.guestBusy),
      reference: pct(r.raw.guestBusy),
    },
    {
      measure: 'wire bytes (proxy, both ways, TLS)',
      osr: mib(r.wire),
      reference: `${mib(r.stored)} compressed change (${r.segments} segments)`,
      ratio: r.wire / r.stored,
      target: '≤ 1.1×',
      met: r.wire / r.stored <= 1.1,
    },
    {
      measure: 'wire bytes against the change written',
      osr: mib(r.wire),
      reference: `${mib(r.changed)} written`,
      ratio: r.wire / r.changed,
    },
  ];
}

const mbs = (w: WorkloadResult): string =>
  `${((w.writes * WRITE_BYTES) / w.seconds / 1e6).toFixed(2)} MB/s in ${w.seconds.toFixed(0)} s`;
const pct = (x: number): string => `${(x * 100).toFixed(0)} %`;

export function agentMarkdown(r: AgentResults, rows: Row[], facts: string, hostCpu: string): string {
  return [
    '### Results',
    '',
    facts,
    `- Points in (b) and up to the one holding its last write: ${r.points}; host CPU over (b): ${hostCpu} (the guest's qemu counts as outside)`,
    '',
    markdownTable(rows),
  ].join('\n');
}
