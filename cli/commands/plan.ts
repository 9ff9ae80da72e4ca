// Recovery plans: `osr plan create|list|show|test-failover|cleanup|failover|commit|status` and
// `osr approve <job> <action>`.
import fs from 'node:fs';
import type { Command } from 'commander';
import * as plans from '../../operations/plans';
import type { RecoveryPlan } from '../../shared/plan-types';
import type { PlanStatus } from '../../shared/contracts/recovery-plan';
import { decideApproval } from './approvals';
import { withContext } from '../common/context';
import { CliError, EXIT, printJson, printTable } from '../common/output';

const collect = (value: string, previous: string[]) => [...previous, value];

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new CliError(`expected a number of seconds, got ${value}`, EXIT.usage);
  return n;
}

/** `g1:cmd` or `g2:post:text`: the group (by name or 1-based number) and the rest. */
function splitGroup(option: string, value: string, groups: plans.PlanSpec['groups']) {
  const at = value.indexOf(':');
  if (at <= 0) throw new CliError(`${option} ${value}: expected <group>:…`, EXIT.usage);
  const key = value.slice(0, at);
  const group = groups.find((g) => g.name === key) ?? groups[Number(key.replace(/^g/, '')) - 1];
  if (!group)
    throw new CliError(`${option} ${value}: no group ${key} (groups are g1…g${groups.length})`, EXIT.usage);
  return { group, rest: value.slice(at + 1) };
}

interface CreateOptions {
  group: string[];
  file?: string;
  preScript: string[];
  postScript: string[];
  manual: string[];
  scriptTimeout?: number;
  manualTimeout?: number;
  onTimeout: string;
  requireApproval?: boolean;
  json?: boolean;
}

function specFromOptions(name: string, o: CreateOptions): plans.PlanSpec {
  if (o.file) {
    if (o.group.length) throw new CliError('give --file or --group, not both', EXIT.usage);
    const spec = JSON.parse(fs.readFileSync(o.file, 'utf8')) as plans.PlanSpec;
    return { ...spec, name };
  }
  if (!o.group.length)
    throw new CliError('a plan needs --group (one per group, in order) or --file', EXIT.usage);
  if (!['fail', 'continue'].includes(o.onTimeout))
    throw new CliError('--on-timeout is fail or continue', EXIT.usage);
  const groups: plans.PlanSpec['groups'] = o.group.map((g, i) => ({
    name: `g${i + 1}`,
    machines: g
      .split(',')
      .map((m) => m.trim())
      .filter(Boolean),
    pre: [],
    post: [],
  }));
  for (const [option, list, when] of [
    ['--pre-script', o.preScript, 'pre'],
    ['--post-script', o.postScript, 'post'],
  ] as const) {
    for (const v of list) {
      const { group, rest } = splitGroup(option, v, groups);
      group[when]!.push({ kind: 'script', command: rest, timeoutSeconds: o.scriptTimeout });
    }
  }
  for (const v of o.manual) {
    const { group, rest } = splitGroup('--manual', v, groups);
    const at = rest.indexOf(':');
    const when = rest.slice(0, at);
    if (at <= 0 || (when !== 'pre' && when !== 'post'))
      throw new CliError(`--manual ${v}: expected <group>:pre|post:<instruction>`, EXIT.usage);
    group[when]!.push({
      kind: 'manual',
      instruction: rest.slice(at + 1),
      timeoutSeconds: o.manualTimeout,
      onTimeout: o.onTimeout as 'fail' | 'continue',
    });
  }
  return { name, groups };
}

function printPlan(plan: RecoveryPlan): void {
  printTable(
    plan.groups.flatMap((g, i) => [
      ...g.pre.map((a) => actionRow(i, g.name, 'pre', a)),
      { order: i + 1, group: g.name, when: 'machines', what: g.machines.join(', ') },
      ...g.post.map((a) => actionRow(i, g.name, 'post', a)),
    ]),
  );
}

function actionRow(i: number, group: string, when: string, a: RecoveryPlan['groups'][number]['pre'][number]) {
  return {
    order: i + 1,
    group,
    when,
    what: `${a.id}: ${a.kind === 'script' ? `run ${a.command}` : `approve "${a.instruction}" (else ${a.onTimeout})`} within ${a.timeoutSeconds} s`,
  };
}

function secondsBetween(a?: string, b?: string): string {
  return a && b ? ((Date.parse(b) - Date.parse(a)) / 1000).toFixed(1) : '';
}

function printStatus(s: PlanStatus): void {
  process.stdout.write(`${s.operation} of plan ${s.plan}, job ${s.job}: ${s.state}\n\n`);
  printTable(
    s.groups.flatMap((g) => [
      {
        group: g.name,
        item: '(group)',
        state: g.state,
        started: g.startedAt ?? '',
        seconds: secondsBetween(g.startedAt, g.endedAt),
        detail: '',
      },
      ...g.actions.map((a) => ({
        group: g.name,
        item: `${a.when} ${a.kind} ${a.id}`,
        state: a.state,
        started: a.startedAt ?? '',
        seconds: secondsBetween(a.startedAt, a.endedAt),
        detail: [a.approvedBy ? `approved by ${a.approvedBy}` : '', a.detail ?? '']
          .filter(Boolean)
          .join('; '),
      })),
      ...g.machines.map((m) => ({
        group: g.name,
        item: m.machine,
        state: m.state,
        started: m.startedAt ?? '',
        seconds: secondsBetween(m.startedAt, m.endedAt),
        detail: `${m.workflowId}${m.pointId ? ` point ${m.pointId}` : ''}${m.detail ? `: ${m.detail}` : ''}`,
      })),
    ]),
  );
  if (s.error) process.stdout.write(`\nerror: ${s.error}\n`);
}

function showJob(json: boolean | undefined, r: { ref: plans.PlanJob; status?: PlanStatus }): void {
  if (json) return printJson(r);
  if (r.status) printStatus(r.status);
  else process.stdout.write(`started ${r.ref.workflowId} (job ${r.ref.job})\n`);
}

export function registerPlanCommands(program: Command): void {
  const cmd = program
    .command('plan')
    .description('recovery plans: ordered groups of machines with script and manual actions');

  cmd
    .command('create <name>')
    .description('create a plan: --group once per group, in order (or --file plan.json)')
    .option('--group <machines>', 'comma-separated machines of the next group (g1, g2, …)', collect, [])
    .option(
      '--file <path>',
      'the plan as JSON: {"groups":[{"name","machines","pre","post"}], "networks":[{"source","subnetId","drillSubnetId"} or {"source","libvirtNetwork"}]}',
    )
    .option('--pre-script <group:command>', 'script run before the group fails over', collect, [])
    .option('--post-script <group:command>', 'script run after the group failed over', collect, [])
    .option('--manual <group:pre|post:instruction>', 'wait for `osr approve`', collect, [])
    .option(
      '--script-timeout <seconds>',
      `timeout of scripts (default ${plans.DEFAULT_SCRIPT_TIMEOUT_SECONDS})`,
      seconds,
    )
    .option(
      '--manual-timeout <seconds>',
      `how long a manual action waits (default ${plans.DEFAULT_MANUAL_TIMEOUT_SECONDS})`,
      seconds,
    )
    .option('--on-timeout <policy>', 'an unapproved manual action: fail or continue', 'fail')
    .option(
      '--require-approval',
      "its failover and commit wait for another identity's approval (`osr approve`)",
    )
    .option('--json', 'print JSON')
    .action(async (name: string, o: CreateOptions) => {
      const spec = { ...specFromOptions(name, o), ...(o.requireApproval ? { requireApproval: true } : {}) };
      const plan = await withContext((ctx) => plans.createPlan(ctx, spec));
      if (o.json) return printJson(plan);
      printPlan(plan);
    });

  cmd
    .command('list')
    .description('the plans')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await withContext((ctx) => plans.listPlans(ctx));
      if (o.json) return printJson(list);
      printTable(
        list.map((p) => ({
          plan: p.name,
          groups: p.groups.length,
          machines: p.groups.reduce((n, g) => n + g.machines.length, 0),
        })),
      );
    });

  cmd
    .command('show <name>')
    .description('a plan with its groups and actions')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const plan = await withContext((ctx) => plans.getPlan(ctx, name));
      if (o.json) return printJson(plan);
      printPlan(plan);
    });

  const start = (operation: 'test-failover' | 'cleanup' | 'failover', description: string) =>
    cmd
      .command(`${operation} <name>`)
      .description(description)
      .option('--no-wait', 'return once started')
      .option('--json', 'print JSON');

  start('test-failover', 'drill every machine of the plan, group by group; replication goes on')
    .option(
      '--point <point>',
      'latest, latest-app, a point id, an ISO time, or group:<group>[/<id>]',
      'latest',
    )
    .action(async (name: string, o: { point: string; wait: boolean; json?: boolean }) => {
      showJob(o.json, await withContext((ctx) => plans.startPlan(ctx, name, 'test-failover', o)));
    });
  start('cleanup', "remove the disks of the plan's drill (the newest, or --drill <job>)")
    .option('--drill <job>', 'the drill job to clean up')
    .action(async (name: string, o: { drill?: string; wait: boolean; json?: boolean }) => {
      showJob(o.json, await withContext((ctx) => plans.startPlan(ctx, name, 'cleanup', o)));
    });
  start('failover', 'fail the plan over, group by group; it then waits for `osr plan commit`')
    .option(
      '--point <point>',
      'unplanned: latest, latest-app, a point id, an ISO time, or group:<group>[/<id>]',
    )
    .option('--planned', "stop each machine's writes and cut a final point first")
    .action(async (name: string, o: { point?: string; planned?: boolean; wait: boolean; json?: boolean }) => {
      showJob(o.json, await withContext((ctx) => plans.startPlan(ctx, name, 'failover', o)));
    });

  cmd
    .command('commit <target>')
    .description("commit a plan's failover (a plan name: its newest failover, or a job id)")
    .option('--json', 'print JSON')
    .action(async (target: string, o: { json?: boolean }) => {
      const status = await withContext((ctx) => plans.commitPlan(ctx, target));
      if (o.json) return printJson(status);
      printStatus(status);
    });

  cmd
    .command('status [job]')
    .description('a plan job (job id or workflow id) with every group, machine and action, or the jobs')
    .option('--json', 'print JSON')
    .action(async (job: string | undefined, o: { json?: boolean }) => {
      if (job === undefined) {
        const jobs = await withContext((ctx) => plans.listPlanJobs(ctx));
        if (o.json) return printJson(jobs);
        return printTable(
          jobs.map((j) => ({ job: j.job, plan: j.plan, operation: j.operation, workflow: j.workflowId })),
        );
      }
      const status = await withContext((ctx) => plans.planStatus(ctx, job));
      if (o.json) return printJson(status);
      printStatus(status);
    });

  program
    .command('approve <job> [action]')
    .description(
      'approve a request waiting for a second identity (<job>: its approval/… id, see `osr approvals`), or a manual action a plan job waits on (<job>: a plan job id, or a plan failback workflow id plan/<plan>/failback/<job>; <action>: its id)',
    )
    .option('--by <name>', 'who approves a manual action', process.env.USER ?? 'operator')
    .option('--note <text>', 'a note kept with an approval request')
    .option('--json', 'print JSON')
    .action(
      async (job: string, action: string | undefined, o: { by: string; note?: string; json?: boolean }) => {
        if (action === undefined) return decideApproval(job, true, o);
        const status = await withContext((ctx) => plans.approve(ctx, job, action, o.by));
        if (o.json) return printJson(status);
        process.stdout.write(`approved ${action} of ${job} as ${o.by}\n\n`);
        // A plan failback answers with its own status (stages, not operations): `osr plan status` shows it.
        if ('operation' in status) printStatus(status);
      },
    );
}
