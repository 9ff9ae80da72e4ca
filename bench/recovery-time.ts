// Recovery-time benchmark (issue 4, "Benchmark"): a plan of 10 REAL machines in two groups of 5,
// with a script action between the groups and a boot check on every machine of the second group,
// timed from the request until every disk is ready (and booted where a boot check is set): the
// drill (test failover) and the unplanned failover from the latest point, with the time of each
// step. Target: at most 60 s on this machine. Part of `npm run bench` (bench/run.ts) and runnable
// alone: `node <outdir>/bench/recovery-time.js` (its own stack; OSR_BENCH_QUICK=1: 4 machines,
// printed only; OSR_BENCH_OUT=<file>: write elsewhere than BENCHMARKS.md).
import fs from 'node:fs';
import path from 'node:path';
import { configureRecovery } from '../operations/failover';
import * as machines from '../operations/machines';
import { createPlan, startPlan } from '../operations/plans';
import { createPolicy } from '../operations/policies';
import { stopPid } from '../lib/process/managed-process';
import { startTestMachine } from '../test/helpers/qemu-machine';
import type { PlanStatus } from '../shared/contracts/recovery-plan';
import { CpuMeter, formatCpu, type CpuUse } from './cpu';
import { allocationPlan, BLOCK_BYTES, fillDisk } from './disk-data';
import {
  Cleanup,
  MiB,
  projectRoot,
  secondsSince,
  sleep,
  startBenchStack,
  tempDir,
  type BenchStack,
} from './harness';
import { childStatuses, formatSpread, planTiming, spread, stepNames, type PlanTiming } from './plan-timing';
import { factsMarkdown, machineFacts, mib, RECOVERY_SECTION, writeBenchmarksFile } from './report';

export const TARGET_SECONDS = 60;
const DISK_BYTES = 64 * MiB;
/** Share of each disk written before protection (runs of 64 KiB to 8 MiB, mixed random/text/zero). */
const DATA_SHARE = 0.25;
const PLAN = 'bench-recovery';
const POLICY = 'bench-recovery-manual';

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

type Say = (msg: string) => void;

/**
 * The boot check of the second group: materialized as qcow2 on the recovery-site host, the
 * "boot" is `qemu-img check` of the whole image then a read of its first 64 KiB, verified against
 * the machine's own pattern byte; then it stays up (as a VM would) until the probe saw it.
 */
function bootCheck(pattern: number) {
  const hex = `0x${pattern.toString(16)}`;
  const command = [
    'D="$OSR_RECOVERED_DISKS"',
    'qemu-img check -U -q "$D"',
    `qemu-io -r -U -f qcow2 -c 'read -P ${hex} 0 ${BLOCK_BYTES}' "$D" > "$D.read" 2>&1`,
    `grep -q '^read ${BLOCK_BYTES}/${BLOCK_BYTES} bytes' "$D.read"`,
    `! grep -q 'verification failed' "$D.read"`,
    'touch "$D.booted"',
    'exec sleep 600',
  ].join(' && ');
  return {
    command,
    probe: 'test -e "$OSR_RECOVERED_DISKS.booted"',
    commandTimeoutSeconds: 120,
    probeTimeoutSeconds: 60,
  };
}

/** Stops the qemu-storage-daemons the recovery left on the "recovery-site host" (materialized disks). */
async function stopMaterialized(stateDir: string): Promise<void> {
  const dir = path.join(stateDir, 'recovered');
  if (!fs.existsSync(dir)) return;
  for (const job of fs.readdirSync(dir)) {
    const pidFile = path.join(dir, job, 'qsd.pid');
    const pid = Number.parseInt(fs.existsSync(pidFile) ? fs.readFileSync(pidFile, 'utf8') : '', 10);
    if (Number.isInteger(pid) && pid > 1) await stopPid(pid, 5_000);
  }
}

async function timedPlan(
  stack: BenchStack,
  meter: CpuMeter,
  operation: 'test-failover' | 'failover',
): Promise<RecoveryRun> {
  const { ctx } = stack;
  const requestedAt = Date.now();
  const start = performance.now();
  const { result, cpu } = await meter.measure(() => startPlan(ctx, PLAN, operation, { point: 'latest' }));
  const seconds = secondsSince(start);
  const returnedAt = Date.now();
  const status = result.status as PlanStatus;
  const expected = operation === 'failover' ? 'failed-over' : 'ready';
  if (status?.state !== expected)
    throw new Error(`${operation} of ${PLAN} ended ${status?.state}: ${status?.error ?? ''}`);
  const children = await childStatuses(await ctx.client(), status);
  const timing = planTiming(status, children);
  const lastEnd = Math.max(...status.groups.map((g) => Date.parse(g.endedAt ?? status.startedAt)));
  const checked = timing.machines.filter((m) => m.bootOk !== undefined);
  return {
    operation,
    seconds,
    beforePlan: (Date.parse(status.startedAt) - requestedAt) / 1000,
    afterPlan: (returnedAt - lastEnd) / 1000,
    timing,
    cpu,
    bootChecks: {
      ok: checked.filter((m) => m.bootOk).length,
      failed: checked.filter((m) => !m.bootOk).map((m) => `${m.machine}: ${m.bootDetail ?? '?'}`),
    },
  };
}

/** Sets up the machines and the plan on a running stack, then times the drill and the failover. */
export async function recoveryTime(
  cleanup: Cleanup,
  stack: BenchStack,
  options: { machines: number; meter: CpuMeter; cores: number; say: Say },
): Promise<RecoveryTimeResult> {
  const { ctx } = stack;
  const { meter, say } = options;
  // The failover leaves its materialized disks served by daemons of their own: stop them at the end.
  cleanup.add('stop the materialized recovered machines', () => stopMaterialized(stack.stateDir));
  await createPolicy(ctx, {
    name: POLICY,
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
  });
  const n = options.machines;
  const names = Array.from({ length: n }, (_, i) => `rt-${String(i + 1).padStart(2, '0')}`);
  const half = Math.ceil(n / 2);
  const groups = [names.slice(0, half), names.slice(half)];

  // --- the machines: one qemu-storage-daemon and one 64 MiB qcow2 disk each, with data ------------
  let dataBytes = 0;
  const vms = await Promise.all(
    names.map(async (name, i) => {
      const vm = await startTestMachine({ sizes: [DISK_BYTES] });
      cleanup.add(`stop test machine ${name}`, () => vm.stop());
      meter.track(`qsd ${name}`, vm.daemon.pid);
      const nbd = await vm.disk();
      const fill = await fillDisk(nbd, allocationPlan(DISK_BYTES, DATA_SHARE, 10 + i), 0.04, 10 + i);
      // Block 0 holds the machine's own pattern byte: what its boot check verifies after recovery.
      await nbd.write(0, Buffer.alloc(BLOCK_BYTES, 0x41 + i));
      await nbd.flush();
      dataBytes += fill.allocatedBytes;
      return vm;
    }),
  );
  say(`${n} machines up, ${mib(DISK_BYTES)} disks with ${mib(dataBytes / n)} of data each on average`);

  // --- protect them all through the product, until every one is 'protected' with a point ---------
  const protectStart = performance.now();
  await Promise.all(
    names.map((name, i) =>
      machines.protect(ctx, {
        name,
        qmpSocket: vms[i]!.daemon.qmpSocket,
        nbdSocket: vms[i]!.daemon.nbdSocket,
        policy: POLICY,
      }),
    ),
  );
  for (;;) {
    const states = await Promise.all(names.map((m) => machines.machineStatus(ctx, m).catch(() => undefined)));
    if (states.every((s) => s?.state === 'protected' && s.lastPoint)) break;
    const failed = states.findIndex((s) => s && s.stats.failedCycles > 0);
    if (failed >= 0)
      throw new Error(
        `protect of ${names[failed]} failed: ${JSON.stringify(states[failed]?.alerts.slice(-3))}`,
      );
    if (secondsSince(protectStart) > 600) throw new Error('the machines were not all protected within 600 s');
    await sleep(500);
  }
  const protectSeconds = secondsSince(protectStart);
  say(`all ${n} protected in ${protectSeconds.toFixed(1)} s`);

  // --- boot checks for the second group, and the plan -------------------------------------------
  for (const name of groups[1]!) {
    await configureRecovery(ctx, name, {
      materialize: { format: 'qcow2' },
      bootCheck: bootCheck(0x41 + names.indexOf(name)),
    });
  }
  const actionsLog = path.join(stack.stateDir, 'plan-actions.log');
  await createPlan(ctx, {
    name: PLAN,
    groups: [
      {
        name: 'g1',
        machines: groups[0]!,
        // Between the groups, as an operator's "point the second tier at the first" step.
        post: [
          {
            kind: 'script',
            command: `echo "$(date -u +%FT%T.%3NZ) $OSR_ACTION $OSR_GROUP $OSR_MACHINES" >> ${actionsLog}`,
            timeoutSeconds: 60,
          },
        ],
      },
      { name: 'g2', machines: groups[1]! },
    ],
  });

  // --- the drill, its cleanup, then the failover (unplanned, latest point) -----------------------
  const drill = await timedPlan(stack, meter, 'test-failover');
  say(`drill of ${n} machines: ${drill.seconds.toFixed(2)} s`);
  const cleanStart = performance.now();
  await startPlan(ctx, PLAN, 'cleanup');
  const cleanupSeconds = secondsSince(cleanStart);
  say(`drill cleanup: ${cleanupSeconds.toFixed(2)} s`);
  const failover = await timedPlan(stack, meter, 'failover');
  say(`failover of ${n} machines: ${failover.seconds.toFixed(2)} s`);
  return {
    machines: n,
    groups: groups.map((g) => g.length),
    dataBytes,
    protectSeconds,
    drill,
    cleanupSeconds,
    failover,
    cores: options.cores,
  };
}

// --- the report -----------------------------------------------------------------------------------

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

// --- alone: its own stack ---------------------------------------------------------------------------

async function main(cleanup: Cleanup): Promise<void> {
  const quick = process.env.OSR_BENCH_QUICK === '1';
  const begin = performance.now();
  const say: Say = (msg) => console.log(`[${secondsSince(begin).toFixed(0).padStart(4)} s] ${msg}`);
  const temporalBinary = process.env.OSR_TEMPORAL_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'temporal');
  const facts = await machineFacts(temporalBinary);
  const work = tempDir(cleanup, 'osr-bench-rt-');
  const stack = await startBenchStack(cleanup, work);
  say(`stack up in ${work} (logs in ${stack.logs})`);
  const meter = new CpuMeter();
  meter.track('bench', process.pid);
  for (const [name, pid] of Object.entries(stack.pids)) meter.track(name, pid);
  const result = await recoveryTime(cleanup, stack, {
    machines: quick ? 4 : 10,
    meter,
    cores: facts.cores,
    say,
  });
  console.log(`\n${recoveryTextTable(result)}\n\n${verdict(result)}\n`);
  if (quick) return say('quick run: BENCHMARKS.md left as it is');
  const file = await writeBenchmarksFile(
    process.env.OSR_BENCH_OUT ?? path.join(projectRoot, 'BENCHMARKS.md'),
    recoveryMarkdown(result, factsMarkdown(facts, secondsSince(begin), 'recovery-time section run alone')),
    RECOVERY_SECTION,
  );
  say(`results written to ${file}`);
}

if (require.main === module) {
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
      console.log('cleaning up');
      await cleanup.run();
    }
    process.exit();
  })();
}
