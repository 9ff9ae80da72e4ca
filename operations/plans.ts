// Recovery plan operations of the control plane (CLI now, HTTP API too): create, list and show
// plans; start a plan's test failover, cleanup or failover; commit it; approve manual actions;
// follow a plan job. Each job is one recoveryPlan workflow, `plan/<plan>/<operation>/<job>`,
// recorded in the vault (plan-jobs/<job>.json) so a job id finds its workflow at once.
import type { WorkflowHandle } from '@temporalio/client';
import { WorkflowIdConflictPolicy, WorkflowNotFoundError } from '@temporalio/common';
import {
  planDoc,
  planProblems,
  type PlanAction,
  type PlanGroup,
  type RecoveryPlan,
  type PlanNetwork,
} from '../shared/plan-types';
import { recoveryDocs, type FailoverLock, type RecoveredMachine } from '../shared/recovery-types';
import { OSR_JOB_KIND, OSR_PLAN, OSR_STATE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { VaultConflictError } from '../lib/azure/vault';
import { failoverWorkflowId } from '../shared/contracts/failover';
import { jobIdAt } from '../shared/contracts/recovery-job';
import { checkName, checkPointSelector, isName, vaultSegment } from '../shared/names';
import {
  approveUpdate,
  planCommitUpdate,
  planStatusQuery,
  planWorkflowId,
  type PlanMachineInput,
  type PlanOperation,
  type PlanStatus,
} from '../shared/contracts/recovery-plan';
import { jobResult, untilState } from './job-results';
import { audited } from './audit';
import { gate } from './approvals';
import { OperationError, type ControlContext, jobSummary } from './context';
import { getRecoverySettings, settingsToStart } from './recovery-settings';
import { resolvePoint } from './points';

export interface PlanJob {
  job: string;
  plan: string;
  operation: PlanOperation;
  workflowId: string;
  startedAt: string;
}

const jobDoc = (job: string) => `plan-jobs/${vaultSegment('job id', job)}.json`;

export const DEFAULT_SCRIPT_TIMEOUT_SECONDS = 300;
export const DEFAULT_MANUAL_TIMEOUT_SECONDS = 3600;

/** A plan as the CLI or a plan file gives it; actions without ids get `<group>-<pre|post>-<n>`. */
export interface PlanSpec {
  name: string;
  /** Its failover and commit wait for a second identity's approval. */
  requireApproval?: boolean;
  groups: Array<{
    name?: string;
    machines: string[];
    pre?: Array<Partial<PlanAction> & { kind: PlanAction['kind'] }>;
    post?: Array<Partial<PlanAction> & { kind: PlanAction['kind'] }>;
  }>;
  networks?: PlanNetwork[];
}

export function planFromSpec(spec: PlanSpec): RecoveryPlan {
  if (!spec || typeof spec.name !== 'string' || !Array.isArray(spec.groups))
    throw new OperationError('a plan needs a name and a list of groups', 'invalid');
  const groups: PlanGroup[] = spec.groups.map((g, i) => {
    const name = g.name ?? `g${i + 1}`;
    const actions = (when: 'pre' | 'post', list: PlanSpec['groups'][number]['pre'] = []) =>
      list.map((a, n): PlanAction => {
        const id = a.id ?? `${name}-${when}-${n + 1}`;
        if (a.kind === 'script')
          return {
            id,
            kind: 'script',
            command: (a as { command?: string }).command ?? '',
            timeoutSeconds: a.timeoutSeconds ?? DEFAULT_SCRIPT_TIMEOUT_SECONDS,
          };
        if (a.kind === 'manual')
          return {
            id,
            kind: 'manual',
            instruction: (a as { instruction?: string }).instruction ?? '',
            timeoutSeconds: a.timeoutSeconds ?? DEFAULT_MANUAL_TIMEOUT_SECONDS,
            onTimeout: (a as { onTimeout?: 'fail' | 'continue' }).onTimeout ?? 'fail',
          };
        throw new OperationError(`action ${id}: kind must be script or manual`, 'invalid');
      });
    return {
      name,
      machines: Array.isArray(g.machines) ? g.machines : [],
      pre: actions('pre', g.pre),
      post: actions('post', g.post),
    };
  });
  if (spec.networks !== undefined && !Array.isArray(spec.networks))
    throw new OperationError('networks must be a list of {source, subnetId, drillSubnetId?}', 'invalid');
  return {
    name: spec.name,
    groups,
    ...(spec.networks?.length ? { networks: spec.networks } : {}),
    ...(spec.requireApproval ? { requireApproval: true } : {}),
    createdAt: new Date().toISOString(),
  };
}

/** Validates against the protected machines and stores a new plan (refused if the name exists). */
export const createPlan = audited(
  'plan.create',
  (ctx: ControlContext, spec: PlanSpec) => storePlan(ctx, spec),
  (_ctx, spec) => ({
    target: spec?.name ?? '?',
    details: { groups: spec?.groups?.map((g) => g.machines?.join(',')) },
  }),
);

async function storePlan(ctx: ControlContext, spec: PlanSpec): Promise<RecoveryPlan> {
  const plan = planFromSpec(spec);
  checkName('plan', plan.name);
  const known = new Set((await ctx.vault.machines()).map((m) => m.name));
  const problems = planProblems(plan, known);
  if (problems.length)
    throw new OperationError(`invalid plan ${plan.name}:\n  ${problems.join('\n  ')}`, 'invalid');
  try {
    await ctx.vault.write(planDoc(plan.name), plan);
  } catch (err) {
    if (err instanceof VaultConflictError)
      throw new OperationError(`a plan named ${plan.name} already exists`, 'conflict');
    throw err;
  }
  return plan;
}

export function listPlans(ctx: ControlContext): Promise<RecoveryPlan[]> {
  return ctx.vault.list<RecoveryPlan>('plans/');
}

export async function getPlan(ctx: ControlContext, name: string): Promise<RecoveryPlan> {
  checkName('plan', name);
  const plan = (await ctx.vault.read<RecoveryPlan>(planDoc(name)))?.value;
  if (plan) return plan;
  const known = (await listPlans(ctx)).map((p) => p.name);
  throw new OperationError(
    `no plan named ${name}${known.length ? `; plans: ${known.join(', ')}` : ''}`,
    'not-found',
  );
}

export interface PlanStartOptions {
  /** Drills and unplanned failovers: latest (default), latest-app, a point id or an ISO time. */
  point?: string;
  /** Failover: stop each machine's writes and cut a final point (no data loss). */
  planned?: boolean;
  /** Cleanup: the drill job to remove (default: the plan's newest drill). */
  drill?: string;
  /** Return once done (drill, cleanup) or failed over (failover); default true. */
  wait?: boolean;
}

export const startPlan = audited(
  'plan.start',
  (ctx: ControlContext, name: string, operation: PlanOperation, options: PlanStartOptions = {}) =>
    startPlanJob(ctx, name, operation, options),
  (_ctx, name, operation, options?) => ({
    target: name,
    details: { operation, point: options?.point, planned: options?.planned, drill: options?.drill },
  }),
);

async function startPlanJob(
  ctx: ControlContext,
  name: string,
  operation: PlanOperation,
  options: PlanStartOptions = {},
): Promise<{ ref: PlanJob; status?: PlanStatus }> {
  checkName('plan', name);
  if (options.point !== undefined) checkPointSelector(options.point);
  if (options.drill !== undefined) checkName('job', options.drill);
  const plan = await getPlan(ctx, name);
  const names = plan.groups.flatMap((g) => g.machines);
  const problems = planProblems(plan, new Set((await ctx.vault.machines()).map((m) => m.name)));
  if (problems.length)
    throw new OperationError(`plan ${name} cannot run:\n  ${problems.join('\n  ')}`, 'invalid');
  if (options.planned && (operation !== 'failover' || options.point))
    throw new OperationError('--planned is for failover only, without --point', 'invalid');
  if (operation === 'failover') {
    await gate(ctx, 'plan-failover', name, { planRequires: plan.requireApproval, ...options });
  }
  const drillJob = operation === 'cleanup' ? await drillToClean(ctx, name, options.drill) : undefined;
  const machines: Record<string, PlanMachineInput> = {};
  // All points are resolved before anything starts: a machine without the point refuses the plan.
  await Promise.all(
    names.map(async (m) => {
      const machine = (await ctx.vault.machine(m))!;
      const point =
        operation === 'cleanup' || options.planned
          ? undefined
          : await resolvePoint(ctx, m, options.point ?? 'latest');
      const settings =
        operation === 'cleanup'
          ? await cleanupSettings(ctx, m, drillJob)
          : await settingsToStart(
              ctx,
              machine,
              operation === 'failover' ? 'failover' : 'drill',
              plan.networks,
            );
      machines[m] = { machine, point, settings, drillJob };
    }),
  );
  const job = jobIdAt(new Date());
  const workflowId = planWorkflowId(name, operation, job);
  const ref: PlanJob = { job, plan: name, operation, workflowId, startedAt: new Date().toISOString() };
  if (operation === 'failover') await takeLocks(ctx, names, job);
  const client = await ctx.client();
  let handle: WorkflowHandle;
  try {
    handle = await client.workflow.start('recoveryPlan', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId,
      args: [{ job, operation, plan, machines }],
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
      typedSearchAttributes: [
        { key: OSR_PLAN, value: name },
        { key: OSR_JOB_KIND, value: `plan-${operation}` },
        { key: OSR_STATE, value: 'running' },
      ],
      ...jobSummary(`${operation} of plan ${name} (${names.length} machines)`),
    });
  } catch (err) {
    if (operation === 'failover') await releaseLocks(ctx, names, job);
    throw err;
  }
  await ctx.vault.write(jobDoc(job), ref, '*');
  if (options.wait === false) return { ref };
  if (operation !== 'failover') return { ref, status: await jobResult<PlanStatus>(handle) };
  return { ref, status: await untilState(handle, planStatusQuery, ['failed-over', 'committed']) };
}

/** The drill a cleanup removes: the one given, or the plan's newest. */
async function drillToClean(ctx: ControlContext, plan: string, drill?: string): Promise<string> {
  const drills = (await ctx.vault.list<PlanJob>('plan-jobs/'))
    .filter((j) => j.plan === plan && j.operation === 'test-failover')
    .sort((a, b) => a.job.localeCompare(b.job));
  if (drill) {
    const found = drills.find((d) => d.job === drill || d.workflowId === drill);
    if (!found) throw new OperationError(`plan ${plan} has no drill ${drill}`, 'not-found');
    return found.job;
  }
  const newest = drills.at(-1);
  if (!newest) throw new OperationError(`plan ${plan} has no drill to clean up`, 'not-found');
  return newest.job;
}

/** One failover per machine, as for single machines: all locks or none. */
async function takeLocks(ctx: ControlContext, machines: string[], job: string): Promise<void> {
  const taken: string[] = [];
  for (const m of machines) {
    const lock: FailoverLock = {
      machine: m,
      job,
      workflowId: failoverWorkflowId(m, job),
      state: 'running',
      at: new Date().toISOString(),
    };
    try {
      await ctx.vault.write(recoveryDocs.failoverLock(m), lock);
      taken.push(m);
    } catch (err) {
      await releaseLocks(ctx, taken, job);
      if (!(err instanceof VaultConflictError)) throw err;
      const held = (await ctx.vault.read<FailoverLock>(recoveryDocs.failoverLock(m)))?.value;
      throw new OperationError(
        `machine ${m} is already failed over or failing over (${held?.workflowId ?? 'unknown job'}, ${held?.state ?? ''}); the plan was not started`,
        'conflict',
      );
    }
  }
}

async function releaseLocks(ctx: ControlContext, machines: string[], job: string): Promise<void> {
  for (const m of machines) {
    const held = await ctx.vault.read<FailoverLock>(recoveryDocs.failoverLock(m));
    if (held?.value.job === job) await ctx.vault.remove(recoveryDocs.failoverLock(m));
  }
}

/** A plan job by job id or workflow id. */
export async function planJob(ctx: ControlContext, target: string): Promise<PlanJob> {
  checkName('job', target);
  const job = target.startsWith('plan/') ? target.split('/')[3] : target;
  const found = job ? (await ctx.vault.read<PlanJob>(jobDoc(job)))?.value : undefined;
  if (!found) throw new OperationError(`no plan job ${target}; see \`osr plan status\``, 'not-found');
  return found;
}

export async function planStatus(ctx: ControlContext, target: string): Promise<PlanStatus> {
  const ref = await planJob(ctx, target);
  try {
    return await (await ctx.client()).workflow.getHandle(ref.workflowId).query(planStatusQuery);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError)
      throw new OperationError(`plan job ${ref.workflowId} no longer exists in Temporal`, 'not-found');
    throw err;
  }
}

/** Plan jobs on record, newest first. */
export async function listPlanJobs(ctx: ControlContext, plan?: string): Promise<PlanJob[]> {
  return (await ctx.vault.list<PlanJob>('plan-jobs/'))
    .filter((j) => !plan || j.plan === plan)
    .sort((a, b) => b.job.localeCompare(a.job));
}

/** Approves a manual action the plan job is waiting on. */
export const approve = audited(
  'plan.approve',
  (ctx: ControlContext, target: string, action: string, by: string) => approveAction(ctx, target, action, by),
  (_ctx, target, action, by) => ({ target, details: { action, by } }),
);

async function approveAction(
  ctx: ControlContext,
  target: string,
  action: string,
  by: string,
): Promise<PlanStatus> {
  checkName('job', target);
  // A failback stage of a plan (plan/<plan>/failback/<job>) is named by its workflow id.
  const workflowId = /^plan\/[^/]+\/failback\//.test(target)
    ? target
    : (await planJob(ctx, target)).workflowId;
  const handle = (await ctx.client()).workflow.getHandle(workflowId);
  await assertRunning(handle, `nothing to approve`);
  return updateOf(() => handle.executeUpdate(approveUpdate, { args: [{ action, by }] }));
}

/** Commits a failed-over plan: every machine's failover, group by group. `target`: job or plan name. */
export const commitPlan = audited(
  'plan.commit',
  (ctx: ControlContext, target: string) => commitPlanJob(ctx, target),
  (_ctx, target) => ({ target }),
);

async function commitPlanJob(ctx: ControlContext, target: string): Promise<PlanStatus> {
  checkName('job', target);
  let ref: PlanJob | undefined;
  // A workflow id (plan/<plan>/failover/<job>) is no plan name: the guard of planDoc would refuse it.
  if (!isName('plan', target) || !(await ctx.vault.read<RecoveryPlan>(planDoc(target))))
    ref = await planJob(ctx, target);
  else ref = (await listPlanJobs(ctx, target)).find((j) => j.operation === 'failover');
  if (!ref || ref.operation !== 'failover')
    throw new OperationError(`no failover of plan ${target} to commit`, 'not-found');
  const handle = (await ctx.client()).workflow.getHandle(ref.workflowId);
  await assertRunning(handle, 'nothing to commit');
  const plan = await ctx.vault.read<RecoveryPlan>(planDoc(ref.plan));
  await gate(ctx, 'plan-commit', ref.job, { planRequires: plan?.value.requireApproval });
  const status = await updateOf(() => handle.executeUpdate(planCommitUpdate));
  await handle.result().catch(() => undefined);
  return status;
}

/** An update to an ended job would fail with "workflow not found": say what happened instead. */
async function assertRunning(handle: WorkflowHandle, what: string): Promise<void> {
  const description = await handle.describe();
  if (description.status.name !== 'RUNNING') {
    const state = await handle
      .query(planStatusQuery)
      .then((s) => s.state)
      .catch(() => description.status.name.toLowerCase());
    throw new OperationError(`plan job ${handle.workflowId} has ended (${state}): ${what}`, 'conflict');
  }
}

async function updateOf(call: () => Promise<PlanStatus>): Promise<PlanStatus> {
  try {
    return await call();
  } catch (err) {
    if ((err as Error).name === 'WorkflowUpdateFailedError') {
      const cause = (err as { cause?: Error }).cause;
      throw new OperationError(cause?.message ?? (err as Error).message, 'conflict');
    }
    if (err instanceof WorkflowNotFoundError) throw new OperationError((err as Error).message, 'not-found');
    throw err;
  }
}

/** A drill that went into Azure is cleaned up there too, whatever the settings say now. */
async function cleanupSettings(ctx: ControlContext, machine: string, drillJob: string | undefined) {
  const settings = await getRecoverySettings(ctx, machine);
  const record = drillJob
    ? await ctx.vault.read<RecoveredMachine>(recoveryDocs.recovered(machine, drillJob))
    : undefined;
  return record?.value.azure ? { ...settings, target: 'azure' as const } : settings;
}
