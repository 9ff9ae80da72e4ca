// The recovery-time benchmark's results (bench/recovery-time.ts) and how they read: the text
// table printed after a run, the verdict against the target and the BENCHMARKS.md section.
import { formatCpu, type CpuUse } from './cpu';
import { MiB } from './harness';
import { formatSpread, spread, stepNames, type PlanTiming } from './plan-timing';
import { mib } from './report';

export const TARGET_SECONDS = 60;
/** Each machine's one disk. */
export const DISK_BYTES = 64 * MiB;

export interface RecoveryRun {
  operation: 'test-failover' | 'failover';
  /** Wall time of the operation call: request → the caller sees every machine ready / failed over. */
  seconds: number;
  /** Wall seconds from the request to the plan workflow's start (points resolved, locks, start). */
  beforePlan: number;
  /** Wall seconds from the plan's last group end to the caller's return. */
  afterPlan: number;
  timing: PlanTiming;
  cpu: CpuUse;
  bootChecks: { ok: number; failed: string[] };
}

export interface RecoveryTimeResult {
  machines: number;
  groups: number[];
  dataBytes: number;
  protectSeconds: number;
  drill: RecoveryRun;
  cleanupSeconds: number;
  failover: RecoveryRun;
  cores: number;
}

const s2 = (x: number | undefined): string =>
  x === undefined || Number.isNaN(x) ? '—' : `${x.toFixed(2)} s`;

function rows(r: RecoveryTimeResult): string[][] {
  const runs = [r.failover, r.drill];
  const out: string[][] = [];
  const row = (label: string, f: (run: RecoveryRun) => string) => out.push([label, ...runs.map(f)]);
  row('total: request → all machines ready', (x) => s2(x.seconds));
  row('  request → plan started (points, locks, start)', (x) => s2(x.beforePlan));
  r.failover.timing.groups.forEach((g, i) => {
    row(`  group ${g.name} (${g.machines.n} machines)`, (x) => s2(x.timing.groups[i]?.seconds));
    row(`    per machine min / median / max`, (x) => formatSpread(x.timing.groups[i]!.machines));
    for (const a of r.failover.timing.actions.filter((a) => a.group === g.name))
      row(`    script action ${a.id}`, (x) => s2(x.timing.actions.find((b) => b.id === a.id)?.seconds));
  });
  row('  last group end → caller sees it', (x) => s2(x.afterPlan));
  const steps = [...new Set([...stepNames(r.failover.timing), ...stepNames(r.drill.timing)])];
  for (const step of steps)
    row(`  step "${step}" per machine (min / median / max)`, (x) =>
      formatSpread(
        spread(x.timing.machines.flatMap((m) => (m.steps[step] === undefined ? [] : [m.steps[step]!]))),
      ),
    );
  row('  plan → child first step per machine', (x) =>
    formatSpread(spread(x.timing.machines.flatMap((m) => (m.startLag === undefined ? [] : [m.startLag])))),
  );
  row('  child last step → plan sees the machine done', (x) =>
    formatSpread(spread(x.timing.machines.flatMap((m) => (m.endLag === undefined ? [] : [m.endLag])))),
  );
  row(
    '  boot checks passed',
    (x) =>
      `${x.bootChecks.ok} of ${x.bootChecks.ok + x.bootChecks.failed.length}${x.bootChecks.failed.length ? ` (FAILED: ${x.bootChecks.failed.join('; ')})` : ''}`,
  );
  row('  boot check probe attempts per machine', (x) =>
    formatSpread(
      spread(x.timing.machines.flatMap((m) => (m.probeAttempts === undefined ? [] : [m.probeAttempts]))),
      '',
      0,
    ),
  );
  row(`target ≤ ${TARGET_SECONDS} s`, (x) =>
    x.seconds <= TARGET_SECONDS && x.bootChecks.failed.length === 0 ? 'met' : 'MISSED',
  );
  return out;
}

const HEAD = ['measure', 'failover (unplanned, latest)', 'drill (test failover)'];

export function recoveryTextTable(r: RecoveryTimeResult): string {
  const cells = rows(r);
  const widths = HEAD.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: readonly string[]) => c.map((x, i) => x.padEnd(widths[i] ?? 0)).join('  ');
  return [line(HEAD), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

/** Where the failover's time went, and, when the target is missed, why. */
export function verdict(r: RecoveryTimeResult): string {
  const f = r.failover;
  const slowest = (group: string) =>
    f.timing.machines.filter((m) => m.group === group).sort((a, b) => b.seconds - a.seconds)[0];
  const path = f.timing.groups
    .map((g) => {
      const m = slowest(g.name);
      const steps = m
        ? Object.entries(m.steps)
            .map(([k, v]) => `${k} ${v.toFixed(2)}`)
            .join(', ')
        : '';
      return `group ${g.name} ${g.seconds.toFixed(2)} s (slowest machine ${m?.machine} ${m?.seconds.toFixed(2)} s: ${steps})`;
    })
    .join(', ');
  const actions = f.timing.actions.map((a) => `${a.id} ${a.seconds.toFixed(2)} s`).join(', ');
  const met = f.seconds <= TARGET_SECONDS && f.bootChecks.failed.length === 0;
  return (
    `Failover ${f.seconds.toFixed(1)} s against the ${TARGET_SECONDS} s target: ${met ? 'met' : 'MISSED'}` +
    ` (${(f.seconds / TARGET_SECONDS).toFixed(2)}× the target); drill ${r.drill.seconds.toFixed(1)} s. ` +
    `Critical path of the failover: ${f.beforePlan.toFixed(2)} s before the plan started, ${path}` +
    `${actions ? `, script action ${actions}` : ''}, then ${f.afterPlan.toFixed(2)} s until the caller saw it.`
  );
}

export function recoveryMarkdown(r: RecoveryTimeResult, header: string): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    '### Results',
    '',
    header,
    '',
    `${r.machines} machines, each its own qemu-storage-daemon with one ${mib(DISK_BYTES)} qcow2 disk ` +
      `(${mib(r.dataBytes / r.machines)} of mixed data on average, block 0 a per-machine pattern), protected ` +
      `through \`protect\` (all ${r.machines} from the call to state \`protected\` with a first point: ` +
      `${r.protectSeconds.toFixed(1)} s, not counted). Plan: groups of ${r.groups.join(' and ')}, one script ` +
      'action after the first group; the second group materialized as qcow2 with a boot check (`qemu-img check` ' +
      'of the image, then a pattern-verified read of its first 64 KiB, through the recovered file).',
    '',
    `| ${HEAD.join(' | ')} |`,
    `| ${HEAD.map(() => '---').join(' | ')} |`,
    // Markdown drops leading spaces: the nesting of the text table becomes "↳ " marks.
    ...rows(r).map(
      (c) =>
        `| ${c.map((x) => esc(x.replace(/^( {2})+/, (sp) => '↳ '.repeat(sp.length / 2)))).join(' | ')} |`,
    ),
    '',
    verdict(r),
    '',
    `Drill cleanup (not counted): ${r.cleanupSeconds.toFixed(2)} s.`,
    '',
    'CPU seconds per process (from /proc):',
    '',
    `- failover: ${formatCpu(r.failover.cpu, r.cores)}`,
    `- drill: ${formatCpu(r.drill.cpu, r.cores)}`,
  ].join('\n');
}
