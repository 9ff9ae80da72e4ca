// The three stages after a committed failover: `osr reprotect`, `osr failback`, `osr reenable`
// (and `reprotect-status`, `reprotect-stop`), and their plan variants `osr plan reprotect|failback|reenable`.
import type { Command } from 'commander';
import * as failback from '../../operations/failback';
import type { FailbackPlanStatus } from '../../shared/contracts/failback-plan';
import type { FailbackStatus } from '../../shared/contracts/failback';
import type { ReprotectStatus } from '../../shared/contracts/reprotect';
import { withContext } from '../common/context';
import { CliError, EXIT, printJson, printTable } from '../common/output';

function positiveSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new CliError(`expected a number of seconds, got ${value}`, EXIT.usage);
  return n;
}

function printReprotect(s: ReprotectStatus): void {
  printTable([
    {
      machine: s.machine,
      state: s.state,
      cycles: s.cycles,
      failed: s.failedCycles,
      'last applied': s.lastApplied ? `cycle ${s.lastApplied.cycle} (${s.lastApplied.instant})` : '',
      target: s.target?.createdDir
        ? `new disks in ${s.target.createdDir}`
        : s.target?.libvirt
          ? `original disks of domain ${s.target.libvirt.domain} (off)`
          : 'original disks',
    },
  ]);
  process.stdout.write('\n');
  printTable(
    s.disks.map((d) => ({
      disk: d.diskId,
      'first cycle': d.resyncMode,
      'resync bytes': d.resyncRawBytes,
      'resync sent': d.resyncSentBytes,
      'bytes in all': d.rawBytes,
      'sent in all': d.sentBytes,
    })),
  );
  for (const p of s.progress ?? [])
    process.stdout.write(
      `\n${p.diskId}: ${p.mode} ${p.segmentsDone}/${p.segmentsTotal} segments, ${p.bytesDone}/${p.bytesTotal} bytes`,
    );
  if (s.alerts.length)
    process.stdout.write(`\nalerts:\n${s.alerts.map((a) => `  ${a.at} ${a.message}`).join('\n')}\n`);
}

function printJob(s: FailbackStatus): void {
  printTable([{ job: s.job, kind: s.kind, machine: s.machine, state: s.state }]);
  process.stdout.write('\n');
  printTable(
    s.steps.map((x) => ({
      step: x.name,
      state: x.state,
      seconds: x.endedAt ? ((Date.parse(x.endedAt) - Date.parse(x.startedAt)) / 1000).toFixed(1) : '',
      detail: x.detail,
    })),
  );
  if (s.error) process.stdout.write(`\nerror: ${s.error}\n`);
}

/** One progress line on stderr while waiting (only on a terminal, never with --json). */
function progressPrinter(json: boolean | undefined): ((s: ReprotectStatus) => void) | undefined {
  if (json || !process.stderr.isTTY) return undefined;
  return (s) => {
    const p = s.progress ?? [];
    const done = p.reduce((a, x) => a + x.bytesDone, 0);
    const all = p.reduce((a, x) => a + x.bytesTotal, 0);
    const pct = all ? Math.floor((100 * done) / all) : 0;
    process.stderr.write(`\r${s.machine}: ${s.state} ${p.length ? `${pct}% of ${all} bytes` : ''}   `);
  };
}

export function registerFailbackCommands(program: Command): void {
  program
    .command('reprotect <machine>')
    .description(
      'replicate a failed-over, committed machine (a materialized copy, or a domain recovered into libvirt) back onto its original disks (diff resync, then reverse delta cycles); an original libvirt domain is shut off while they are written; a machine with the Mobility agent has them written by its agent, once nothing on it uses them (unmount them first)',
    )
    .option(
      '--interval <seconds>',
      "seconds between reverse cycles (default: the policy's crash-point interval)",
      positiveSeconds,
    )
    .option('--pre <command>', "stops the recovery-site copy's writers (run by failback)")
    .option('--post <command>', "resumes the recovery-site copy's writers")
    .option('--no-wait', 'return once started (default: wait until the diff resync is applied)')
    .option('--json', 'print JSON')
    .action(
      async (
        machine: string,
        o: { interval?: number; pre?: string; post?: string; wait: boolean; json?: boolean },
      ) => {
        const result = await withContext((ctx) =>
          failback.startReprotect(ctx, machine, {
            intervalSeconds: o.interval,
            quiesce: o.pre || o.post ? { pre: o.pre, post: o.post } : undefined,
            wait: o.wait,
            onStatus: progressPrinter(o.json),
          }),
        );
        if (progressPrinter(o.json)) process.stderr.write('\n');
        if (o.json) return printJson(result);
        if (result.status) printReprotect(result.status);
        else process.stdout.write(`started ${result.workflowId}\n`);
      },
    );

  program
    .command('reprotect-status <machine>')
    .description('reverse replication of a machine: state, cycles, bytes sent, progress')
    .option('--json', 'print JSON')
    .action(async (machine: string, o: { json?: boolean }) => {
      const status = await withContext((ctx) => failback.reprotectStatus(ctx, machine));
      if (o.json) return printJson(status);
      printReprotect(status);
    });

  program
    .command('reprotect-stop <machine>')
    .description(
      "give reverse replication up: the original disks go back to the master target's last point (a libvirt original stays shut off), its exports and storage daemon go; the machine keeps running in the recovery site",
    )
    .option('--json', 'print JSON')
    .action(async (machine: string, o: { json?: boolean }) => {
      const status = await withContext((ctx) => failback.stopReprotect(ctx, machine));
      if (o.json) return printJson(status);
      printReprotect(status);
    });

  program
    .command('failback <machine>')
    .description(
      'planned failover to the primary site: stop writes in the recovery site, final cycle, the machine runs on its original disks again (a libvirt domain: virsh start)',
    )
    .option('--no-wait', 'return once started')
    .option('--json', 'print JSON')
    .action(async (machine: string, o: { wait: boolean; json?: boolean }) => {
      const result = await withContext((ctx) => failback.startFailback(ctx, machine, { wait: o.wait }));
      if (o.json) return printJson(result);
      if (result.status) printJob(result.status);
      else process.stdout.write(`started ${result.workflowId}\n`);
    });

  program
    .command('reenable <machine>')
    .description(
      'after failback: forward replication again, a resync against the kept replica (never a full copy)',
    )
    .option('--no-wait', 'return once started')
    .option('--json', 'print JSON')
    .action(async (machine: string, o: { wait: boolean; json?: boolean }) => {
      const result = await withContext((ctx) => failback.startReenable(ctx, machine, { wait: o.wait }));
      if (o.json) return printJson(result);
      if (result.status) printJob(result.status);
      else process.stdout.write(`started ${result.workflowId}\n`);
    });

  program
    .command('failback-status <workflowId>')
    .description('a failback, re-enable or plan-stage job (workflow id) with its steps')
    .option('--json', 'print JSON')
    .action(async (workflowId: string, o: { json?: boolean }) => {
      if (workflowId.startsWith('plan/')) {
        const plan = await withContext((ctx) => failback.planStageStatus(ctx, workflowId));
        return o.json ? printJson(plan) : printPlanStage(plan);
      }
      const job = await withContext((ctx) => failback.failbackJobStatus(ctx, workflowId));
      if (o.json) return printJson(job);
      printJob(job);
    });

  // Plan variants, under the existing `osr plan`.
  const plan = program.commands.find((c) => c.name() === 'plan') ?? program.command('plan');
  for (const stage of ['reprotect', 'failback', 'reenable'] as const) {
    plan
      .command(`${stage} <plan>`)
      .description(
        `${stage} every machine of the plan: groups in order, the machines of a group at once (one plan job)`,
      )
      .option('--no-wait', 'return once the plan job started')
      .option('--json', 'print JSON')
      .action(async (name: string, o: { wait: boolean; json?: boolean }) => {
        const result = await withContext((ctx) => failback.planStage(ctx, name, stage, { wait: o.wait }));
        if (o.json) return printJson(result);
        if (!result.status) return void process.stdout.write(`started ${result.workflowId}\n`);
        printPlanStage(result.status);
      });
  }
}

function printPlanStage(s: FailbackPlanStatus): void {
  process.stdout.write(`${s.plan} ${s.stage}: ${s.state} (job ${s.job})\n\n`);
  printTable(
    s.groups.flatMap((g) =>
      g.machines.map((m) => ({
        group: g.name,
        machine: m.machine,
        state: m.state,
        workflow: m.workflowId,
        detail: m.detail,
      })),
    ),
  );
  if (s.error) process.stdout.write(`\nerror: ${s.error}\n`);
}
