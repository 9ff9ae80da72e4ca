// Failback operations of the control plane (CLI, HTTP API): the three stages after a committed
// failover — reprotect (reverse replication onto the original disks), failback (planned failover
// to the primary site) and re-enable (forward replication again, resync against the kept
// replica) — for one machine or a recovery plan (groups in order, machines of a group at once).
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import { failbackDocs, reverseId, type FailbackRecord } from '../shared/failback-types';
import { recoveryDocs, type FailoverLock, type RecoveredMachine } from '../shared/recovery-types';
import type { ProtectedMachine, QuiesceHooks } from '../shared/replication-types';
import { OSR_JOB_KIND, OSR_MACHINE, OSR_PLAN, OSR_STATE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { jobIdAt } from '../shared/contracts/failover';
import {
  failbackPlanStatusQuery,
  failbackPlanWorkflowId,
  failbackStatusQuery,
  failbackWorkflowId,
  reenableWorkflowId,
  reprotectStatusQuery,
  reprotectWorkflowId,
  stopReprotectUpdate,
  type FailbackInput,
  type FailbackPlanInput,
  type FailbackPlanStatus,
  type FailbackStage,
  type FailbackStatus,
  type PlanStageMachine,
  type ReenableInput,
  type ReprotectInput,
  type ReprotectStatus,
} from '../shared/contracts/failback';
import { jobResult } from './job-results';
import { audited } from './audit';
import { OperationError, type ControlContext, jobSummary } from './context';
import { getPlan } from './plans';
import { requireMachine } from './machines';
import { getPolicy } from './policies';

export interface ReprotectOptions {
  /** Seconds between reverse delta cycles; default: the machine's policy's crash-point interval. */
  intervalSeconds?: number;
  /** Commands that stop / resume the writers of the recovery-site copy (failback runs `pre`). */
  quiesce?: QuiesceHooks;
  /** Return once the diff resync is applied (default true). */
  wait?: boolean;
  /** Tests lower it to exercise continueAsNew. */
  maxCyclesPerRun?: number;
  /** Called with each status seen while waiting (progress). */
  onStatus?: (status: ReprotectStatus) => void;
}

async function workflowRunning(ctx: ControlContext, workflowId: string): Promise<boolean> {
  try {
    const client = await ctx.client();
    return (await client.workflow.getHandle(workflowId).describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

async function failbackRecord(ctx: ControlContext, name: string): Promise<FailbackRecord | undefined> {
  return (await ctx.vault.read<FailbackRecord>(failbackDocs.record(name)))?.value;
}

/** The committed failover a failback starts from, with its recovery-site copy. */
async function committedFailover(ctx: ControlContext, name: string): Promise<RecoveredMachine> {
  const lock = (await ctx.vault.read<FailoverLock>(recoveryDocs.failoverLock(name)))?.value;
  if (!lock)
    throw new OperationError(
      `machine ${name} was not failed over: reprotect replicates a failed-over machine back. Fail it over first (\`osr failover start ${name} --planned\`, then \`osr failover commit ${name}\`)`,
      'conflict',
    );
  if (lock.state !== 'committed')
    throw new OperationError(
      `the failover of ${name} (${lock.workflowId}) is not committed yet: commit it (\`osr failover commit ${name}\`) before reprotecting`,
      'conflict',
    );
  const record = (await ctx.vault.read<RecoveredMachine>(recoveryDocs.recovered(name, lock.job)))?.value;
  if (!record?.committed)
    throw new OperationError(
      `the vault has no committed failover record of ${name} (job ${lock.job})`,
      'conflict',
    );
  if (!record.materialized)
    throw new OperationError(
      `the failed-over ${name} does not run in the recovery site (its failover disks were not materialized), so there is nothing to replicate back: set \`osr failover configure ${name} --materialize qcow2\` before failing over`,
      'conflict',
    );
  return record;
}

/** Validates a reprotect of one machine and builds its workflow input (nothing is started). */
async function prepareReprotect(
  ctx: ControlContext,
  name: string,
  options: ReprotectOptions,
): Promise<{ workflowId: string; input: ReprotectInput }> {
  const machine = await requireMachine(ctx, name);
  const existing = await failbackRecord(ctx, name);
  const workflowId = reprotectWorkflowId(name);
  if (existing?.stage === 'failed-back')
    throw new OperationError(
      `${name} is already failed back to the primary site: re-enable forward replication with \`osr reenable ${name}\``,
      'conflict',
    );
  if (await workflowRunning(ctx, workflowId))
    throw new OperationError(
      `${name} is already being reprotected (${workflowId}); see \`osr reprotect-status ${name}\``,
      'conflict',
    );
  const failedOver = await committedFailover(ctx, name);
  const materialized = failedOver.materialized as NonNullable<RecoveredMachine['materialized']>;
  const policy = await getPolicy(ctx, machine.policy);
  const source: ProtectedMachine = {
    name: reverseId(name),
    site: ctx.config.recoverySite,
    source: { type: 'qemu', qmpSocket: materialized.qmpSocket, nbdSocket: materialized.nbdSocket },
    policy: machine.policy,
    ...(options.quiesce ? { quiesce: options.quiesce } : {}),
    createdAt: new Date().toISOString(),
  };
  // The materialized daemon serves disk i of the failover as node disk<i>.
  const nodes: Record<string, string> = {};
  materialized.files.forEach((f, i) => (nodes[f.diskId] = `disk${i}`));
  return {
    workflowId,
    input: {
      job: jobIdAt(new Date()),
      machine,
      failoverJob: failedOver.job,
      source,
      nodes,
      intervalSeconds: options.intervalSeconds ?? policy.crashPointSeconds,
      maxCyclesPerRun: options.maxCyclesPerRun,
    },
  };
}

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

export async function reprotectStatus(ctx: ControlContext, name: string): Promise<ReprotectStatus> {
  const client = await ctx.client();
  try {
    return await client.workflow.getHandle(reprotectWorkflowId(name)).query(reprotectStatusQuery);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError)
      throw new OperationError(
        `${name} is not being reprotected; start with \`osr reprotect ${name}\``,
        'not-found',
      );
    throw err;
  }
}

/** Gives reverse replication up (nothing is brought up; the machine keeps running in the recovery site). */
async function stopReprotectNow(ctx: ControlContext, name: string): Promise<ReprotectStatus> {
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

async function prepareFailback(
  ctx: ControlContext,
  name: string,
): Promise<{ workflowId: string; input: FailbackInput }> {
  const machine = await requireMachine(ctx, name);
  const record = await failbackRecord(ctx, name);
  if (record?.stage === 'failed-back')
    throw new OperationError(
      `${name} is already failed back: re-enable forward replication with \`osr reenable ${name}\``,
      'conflict',
    );
  if (record?.stage !== 'reprotecting' || !(await workflowRunning(ctx, reprotectWorkflowId(name))))
    throw new OperationError(
      `${name} is not being reprotected: reprotect it first (\`osr reprotect ${name}\`) so that its original disks are in sync`,
      'conflict',
    );
  const reprotect = await reprotectStatus(ctx, name);
  if (reprotect.state !== 'protected' || !reprotect.target)
    throw new OperationError(
      `the reprotect of ${name} is ${reprotect.state}: fail back once its first (resync) cycle is applied`,
      'conflict',
    );
  const job = jobIdAt(new Date());
  return {
    workflowId: failbackWorkflowId(name, job),
    input: {
      job,
      machine,
      failoverJob: record.failoverJob,
      reprotectWorkflowId: reprotectWorkflowId(name),
      source: reprotect.source,
      target: reprotect.target,
    },
  };
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

async function prepareReenable(
  ctx: ControlContext,
  name: string,
): Promise<{ workflowId: string; input: ReenableInput }> {
  const machine = await requireMachine(ctx, name);
  const record = await failbackRecord(ctx, name);
  if (record?.stage !== 'failed-back')
    throw new OperationError(
      record?.stage === 'reenabled'
        ? `${name} is already re-enabled; see \`osr status ${name}\``
        : `${name} is not failed back yet: ${record ? `fail it back first (\`osr failback ${name}\`)` : `it must be failed over, reprotected and failed back first (\`osr reprotect ${name}\`)`}`,
      'conflict',
    );
  const job = jobIdAt(new Date());
  return {
    workflowId: reenableWorkflowId(name, job),
    input: { job, machine: name, site: machine.site, failoverJob: record.failoverJob },
  };
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
