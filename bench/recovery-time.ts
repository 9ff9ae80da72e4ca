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
import { createManualPolicy } from './manual-protection';
import { stopPid } from '../lib/process/managed-process';
import { startTestMachine } from '../test/helpers/qemu-machine';
import type { PlanStatus } from '../shared/contracts/recovery-plan';
import { CpuMeter } from './cpu';
import { allocationPlan, BLOCK_BYTES, fillDisk } from './disk-data';
import type { Cleanup } from './harness';
import {
  projectRoot,
  runMain,
  secondsSince,
  sleep,
  startBenchStack,
  tempDir,
  type BenchStack,
} from './harness';
import { childStatuses, planTiming } from './plan-timing';
import { factsMarkdown, machineFacts, mib, RECOVERY_SECTION, writeBenchmarksFile } from './report';
import {
  recoveryMarkdown,
  recoveryTextTable,
  verdict,
  DISK_BYTES,
  type RecoveryRun,
  type RecoveryTimeResult,
} from './recovery-time-report';

/** Share of each disk written before protection (runs of 64 KiB to 8 MiB, mixed random/text/zero). */
const DATA_SHARE = 0.25;
const PLAN = 'bench-recovery';
const POLICY = 'bench-recovery-manual';

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
  await createManualPolicy(ctx, POLICY);
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

if (require.main === module) runMain(main, console.log);
