// Failback operations of the control plane (CLI, HTTP API): the three stages after a committed
// failover — reprotect (reverse replication onto the original disks), failback (planned failover
// to the primary site) and re-enable (forward replication again, resync against the kept
// replica) — for one machine or a recovery plan (groups in order, machines of a group at once).
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
  WorkflowNotFoundError,
} from '@temporalio/common';
import { WorkflowUpdateFailedError } from '@temporalio/client/lib/errors';
import { failbackDocs, type FailbackRecord } from '../shared/failback-types';
import { OSR_JOB_KIND, OSR_MACHINE, OSR_PLAN, OSR_STATE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { jobIdAt } from '../shared/contracts/recovery-job';
import { checkName } from '../shared/names';
import {
  failbackPlanStatusQuery,
  failbackPlanWorkflowId,
  type FailbackPlanInput,
  type FailbackPlanStatus,
  type FailbackStage,
  type PlanStageMachine,
} from '../shared/contracts/failback-plan';
import { failbackStatusQuery, type FailbackInput, type FailbackStatus } from '../shared/contracts/failback';
import { type ReenableInput } from '../shared/contracts/reenable';
import {
  reprotectStatusQuery,
  reprotectWorkflowId,
  stopReprotectUpdate,
  type ReprotectInput,
  type ReprotectStatus,
} from '../shared/contracts/reprotect';
import { jobResult } from './job-results';
import { audited } from './audit';
import { OperationError, type ControlContext, jobSummary } from './context';
import { getPlan } from './plans';
import {
  prepareFailback,
  prepareReenable,
  prepareReprotect,
  reprotectStatus,
  workflowRunning,
  type ReprotectOptions,
} from './failback-checks';

async function recordReprotecting(ctx: ControlContext, input: ReprotectInput, workflowId: string) {
  await ctx.vault.update<FailbackRecord>(failbackDocs.record(input.machine.name), () => ({
    machine: input.machine.name,
    failoverJob: input.failoverJob,
    stage: 'reprotecting',
    reprotectWorkflowId: workflowId,
    at: new Date().toISOString(),
  }));
}

/** Starts reverse replication of a failed-over, committed machine onto its original disks. */
async function startReprotectNow(
  ctx: ControlContext,
  name: string,
  options: ReprotectOptions = {},
): Promise<{ workflowId: string; status?: ReprotectStatus }> {
  const { workflowId, input } = await prepareReprotect(ctx, name, options);
  const client = await ctx.client();
  let handle;
  try {
    handle = await client.workflow.start('reprotect', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId,
      args: [input],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
      typedSearchAttributes: [
        { key: OSR_MACHINE, value: name },
        { key: OSR_JOB_KIND, value: 'reprotect' },
        { key: OSR_STATE, value: 'preparing' },
      ],
      ...jobSummary(`Reprotect of ${name}: recovery site → original disks (failover ${input.failoverJob})`),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError)
      throw new OperationError(`${name} is already being reprotected (${workflowId})`, 'conflict');
    throw err;
  }
  await recordReprotecting(ctx, input, workflowId);
  if (options.wait === false) return { workflowId };
  for (;;) {
    const status = await handle.query(reprotectStatusQuery).catch(() => undefined);
    if (status) options.onStatus?.(status);
    if (status && ['protected', 'synced', 'stopped'].includes(status.state)) return { workflowId, status };
    if ((await handle.describe()).status.name !== 'RUNNING')
      return { workflowId, status: await jobResult<ReprotectStatus>(handle) };
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Gives reverse replication up (nothing is brought up; the machine keeps running in the recovery site). */
async function stopReprotectNow(ctx: ControlContext, name: string): Promise<ReprotectStatus> {
  checkName('machine', name);
  const workflowId = reprotectWorkflowId(name);
  if (!(await workflowRunning(ctx, workflowId)))
    throw new OperationError(`${name} is not being reprotected`, 'not-found');
  const client = await ctx.client();
  try {
    const status = await client.workflow.getHandle(workflowId).executeUpdate(stopReprotectUpdate);
    await ctx.vault.remove(failbackDocs.record(name));
    return status;
  } catch (err) {
    throw refusal(err);
  }
}

/** Fails a reprotected machine back: final cycle, then its original disks run again. */
async function startFailbackNow(ctx: ControlContext, name: string, options: { wait?: boolean } = {}) {
  const { workflowId, input } = await prepareFailback(ctx, name);
  return startStageJob(ctx, name, 'failback', workflowId, input, options, {
    summary: `Failback of ${name} to its original disks (planned: no data loss)`,
  });
}

/** Starts a failback or re-enable job of one machine; with `wait` (default) returns its end. */
async function startStageJob(
  ctx: ControlContext,
  name: string,
  kind: 'failback' | 'reenable',
  workflowId: string,
  input: FailbackInput | ReenableInput,
  options: { wait?: boolean },
  meta: { summary: string },
): Promise<{ workflowId: string; status?: FailbackStatus }> {
  const client = await ctx.client();
  const handle = await client.workflow.start(kind, {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId,
    args: [input],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    typedSearchAttributes: [
      { key: OSR_MACHINE, value: name },
      { key: OSR_JOB_KIND, value: kind },
      { key: OSR_STATE, value: 'running' },
    ],
    ...jobSummary(meta.summary),
  });
  if (options.wait === false) return { workflowId };
  return { workflowId, status: await jobResult<FailbackStatus>(handle) };
}

/** Forward replication again, after failback: a resync against the kept replica. */
async function startReenableNow(ctx: ControlContext, name: string, options: { wait?: boolean } = {}) {
  const { workflowId, input } = await prepareReenable(ctx, name);
  return startStageJob(ctx, name, 'reenable', workflowId, input, options, {
    summary: `Re-enable forward replication of ${name} (resync against the kept replica)`,
  });
}

/** A failback or re-enable job's status, by workflow id. */
export async function failbackJobStatus(ctx: ControlContext, workflowId: string): Promise<FailbackStatus> {
  checkName('job', workflowId);
  const client = await ctx.client();
  try {
    return await client.workflow.getHandle(workflowId).query(failbackStatusQuery);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new OperationError(`no job ${workflowId}`, 'not-found');
    throw err;
  }
}

/**
 * One stage for every machine of a plan, as one failbackPlan workflow (`plan/<plan>/<stage>/<job>`):
 * groups in the plan's order, the machines of a group at once, each as its single-machine
 * workflow. Every machine is checked first: if any cannot run the stage, nothing starts and
 * every problem is listed. With `wait` (default) returns when the plan job ends.
 */
async function planStageNow(
  ctx: ControlContext,
  planName: string,
  stage: FailbackStage,
  options: ReprotectOptions = {},
): Promise<{ workflowId: string; status?: FailbackPlanStatus }> {
  checkName('plan', planName);
  const plan = await getPlan(ctx, planName);
  const machines: Record<string, PlanStageMachine> = {};
  const problems: string[] = [];
  for (const name of plan.groups.flatMap((g) => g.machines)) {
    try {
      if (stage === 'reprotect') machines[name] = { stage, ...(await prepareReprotect(ctx, name, options)) };
      else if (stage === 'failback') machines[name] = { stage, ...(await prepareFailback(ctx, name)) };
      else machines[name] = { stage, ...(await prepareReenable(ctx, name)) };
    } catch (err) {
      problems.push(`${name}: ${(err as Error).message}`);
    }
  }
  if (problems.length)
    throw new OperationError(
      `plan ${plan.name} cannot ${stage}; nothing was started:\n  ${problems.join('\n  ')}`,
      'conflict',
    );
  const job = jobIdAt(new Date());
  const workflowId = failbackPlanWorkflowId(plan.name, stage, job);
  const input: FailbackPlanInput = {
    job,
    plan: plan.name,
    stage,
    // The failback stage brings machines up on the primary site: it runs the plan's actions.
    groups: plan.groups.map((g) =>
      stage === 'failback'
        ? { name: g.name, machines: g.machines, pre: g.pre, post: g.post }
        : { name: g.name, machines: g.machines },
    ),
    machines,
  };
  const client = await ctx.client();
  const handle = await client.workflow.start('failbackPlan', {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId,
    args: [input],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    typedSearchAttributes: [
      { key: OSR_PLAN, value: plan.name },
      { key: OSR_JOB_KIND, value: `plan-${stage}` },
      { key: OSR_STATE, value: 'running' },
    ],
    ...jobSummary(`${stage} of plan ${plan.name}: ${plan.groups.length} group(s) in order`),
  });
  if (stage === 'reprotect')
    for (const m of Object.values(machines))
      if (m.stage === 'reprotect') await recordReprotecting(ctx, m.input, m.workflowId);
  if (options.wait === false) return { workflowId };
  return { workflowId, status: await jobResult<FailbackPlanStatus>(handle) };
}

/** A plan stage job's status, by workflow id. */
export async function planStageStatus(ctx: ControlContext, workflowId: string): Promise<FailbackPlanStatus> {
  checkName('job', workflowId);
  const client = await ctx.client();
  try {
    return await client.workflow.getHandle(workflowId).query(failbackPlanStatusQuery);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError)
      throw new OperationError(`no plan job ${workflowId}`, 'not-found');
    throw err;
  }
}

function refusal(err: unknown): Error {
  if (err instanceof WorkflowUpdateFailedError || (err as Error).name === 'WorkflowUpdateFailedError') {
    const cause = (err as { cause?: Error }).cause;
    return new OperationError(cause?.message ?? (err as Error).message, 'conflict');
  }
  return err as Error;
}

export { reprotectStatus, type ReprotectOptions };

export const startReprotect = audited('reprotect.start', startReprotectNow, (_ctx, name, options?) => ({
  target: name,
  details: { intervalSeconds: options?.intervalSeconds },
}));
export const stopReprotect = audited('reprotect.stop', stopReprotectNow, (_ctx, name) => ({ target: name }));
export const startFailback = audited('failback.start', startFailbackNow, (_ctx, name, _options?) => ({
  target: name,
}));
export const startReenable = audited('reenable.start', startReenableNow, (_ctx, name, _options?) => ({
  target: name,
}));
export const planStage = audited('plan.failback-stage', planStageNow, (_ctx, planName, stage, _options?) => ({
  target: planName,
  details: { stage },
}));
