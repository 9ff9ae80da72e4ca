// Recovery operations of the control plane (CLI and HTTP API): drills and their cleanup, failover
// (unplanned or planned), commit, change of recovery point and job status. The per-machine
// recovery settings live in recovery-settings.ts (re-exported here, where callers look for them).
import type { WorkflowHandle } from '@temporalio/client';
import { WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowNotFoundError } from '@temporalio/common';
import { WorkflowUpdateFailedError } from '@temporalio/client/lib/errors';
import type { FailoverLock, RecoveredMachine } from '../shared/recovery-types';
import { recoveryDocs } from '../shared/recovery-types';
import { OSR_JOB_KIND, OSR_MACHINE, OSR_STATE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { changeRecoveryPointUpdate, commitUpdate, failoverWorkflowId } from '../shared/contracts/failover';
import { cleanupWorkflowId, drillWorkflowId } from '../shared/contracts/test-failover';
import { checkName, checkPointSelector } from '../shared/names';
import {
  jobIdAt,
  recoveryStatusQuery,
  type RecoveryJobKind,
  type RecoveryStatus,
} from '../shared/contracts/recovery-job';
import { jobResult, untilState } from './job-results';
import { audited } from './audit';
import { gate } from './approvals';
import { OperationError, type ControlContext, jobSummary } from './context';
import { takeFailoverLock, workflowState } from './failover-lock';
import { registeredMachine } from './machines';
import { resolvePoint } from './points';

import { settingsToStart } from './recovery-settings';

export { configureRecovery, getRecoverySettings } from './recovery-settings';

export interface JobRef {
  job: string;
  workflowId: string;
  machine: string;
  kind: RecoveryJobKind;
  pointId?: string;
}

export interface StartOptions {
  /** latest (default), latest-app, a point id, or an ISO time (newest point at or before it). */
  point?: string;
  /** Return once the job is done (drill, cleanup) or failed over (failover); default true. */
  wait?: boolean;
}

export interface DrillOptions extends StartOptions {
  /** Start a drill even though one of the machine is alive (not cleaned up): its disks are copied again. */
  another?: boolean;
}

function startAttributes(machine: string, kind: RecoveryJobKind) {
  return [
    { key: OSR_MACHINE, value: machine },
    { key: OSR_JOB_KIND, value: kind },
    { key: OSR_STATE, value: 'running' },
  ];
}

/** Starts a drill of one machine from a point; replication is not touched. */
export const startTestFailover = audited(
  'drill.start',
  (ctx: ControlContext, name: string, options: DrillOptions = {}) => startDrill(ctx, name, options),
  (_ctx, name, options?) => ({
    target: name,
    details: { point: options?.point ?? 'latest', ...(options?.another ? { another: true } : {}) },
  }),
);

async function startDrill(
  ctx: ControlContext,
  name: string,
  options: DrillOptions = {},
): Promise<{ ref: JobRef; status?: RecoveryStatus }> {
  checkName('machine', name);
  if (options.point !== undefined) checkPointSelector(options.point);
  const machine = await registeredMachine(ctx, name);
  const point = await resolvePoint(ctx, name, options.point ?? 'latest');
  if (!options.another) await refuseLiveDrill(ctx, name);
  const job = jobIdAt(new Date());
  const workflowId = drillWorkflowId(name, job);
  const client = await ctx.client();
  const handle = await client.workflow.start('testFailover', {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId,
    args: [{ job, machine, point, settings: await settingsToStart(ctx, machine, 'drill') }],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    typedSearchAttributes: startAttributes(name, 'drill'),
    ...jobSummary(`Drill of ${name} from point ${point.id} (${point.instant})`),
  });
  const ref: JobRef = { job, workflowId, machine: name, kind: 'drill', pointId: point.id };
  if (options.wait === false) return { ref };
  return { ref, status: await jobResult<RecoveryStatus>(handle) };
}

/**
 * One drill per machine unless asked for another: a second copy of every disk is rarely meant.
 * A drill is alive from its start (its workflow runs) until its cleanup removes its record.
 */
async function refuseLiveDrill(ctx: ControlContext, name: string): Promise<void> {
  const live = new Map<string, string>();
  const recorded = await ctx.vault.list<RecoveredMachine>(`recovered/${name}/`);
  for (const r of recorded) if (r.kind === 'drill' && r.machine === name) live.set(r.job, 'ready');
  const client = await ctx.client();
  const query = `OsrMachine = '${name}' AND OsrJobKind = 'drill' AND ExecutionStatus = 'Running'`;
  for await (const wf of client.workflow.list({ query }))
    live.set(wf.workflowId.split('/')[2] ?? '', 'running');
  const [job, state] = [...live].sort(([a], [b]) => b.localeCompare(a))[0] ?? [];
  if (job === undefined) return;
  throw new OperationError(
    `machine ${name} already has a live drill: job ${job} (${drillWorkflowId(name, job)}, ${state === 'running' ? 'still building' : 'ready, not cleaned up'})${live.size > 1 ? ` and ${live.size - 1} more` : ''}. Clean it up first (\`osr failover cleanup ${job}\`), or ask for another drill beside it with --another (API: "another": true). Nothing was started.`,
    'conflict',
  );
}

/**
 * Cleans up drills: `target` is a drill's job id or workflow id (that drill), or a machine name
 * (every drill of it still recorded). Returns one cleanup per drill.
 */
export const cleanupTestFailover = audited(
  'drill.cleanup',
  (ctx: ControlContext, target: string, options: { wait?: boolean } = {}) =>
    cleanupDrills(ctx, target, options),
  (_ctx, target, _options?) => ({ target }),
);

async function cleanupDrills(
  ctx: ControlContext,
  target: string,
  options: { wait?: boolean } = {},
): Promise<Array<{ ref: JobRef; status?: RecoveryStatus }>> {
  checkName('job', target);
  const drills = (await ctx.vault.list<RecoveredMachine>('recovered/')).filter((r) => r.kind === 'drill');
  const jobOf = target.startsWith('drill/') ? target.split('/')[2] : target;
  let chosen = drills.filter((r) => r.job === jobOf);
  if (chosen.length === 0) chosen = drills.filter((r) => r.machine === target);
  if (chosen.length === 0) {
    throw new OperationError(
      `no drill to clean up for "${target}"; drills on record: ${drills.map((d) => `${d.machine} ${d.job}`).join(', ') || 'none'}`,
      'not-found',
    );
  }
  const client = await ctx.client();
  for (const drill of chosen) {
    // Cleaning up under a drill still building would race it: wait for the drill to end first.
    if ((await workflowState(ctx, drillWorkflowId(drill.machine, drill.job))) === 'running')
      throw new OperationError(
        `drill ${drill.job} of ${drill.machine} is still running; clean it up once it is ready`,
        'conflict',
      );
  }
  const out: Array<{ ref: JobRef; status?: RecoveryStatus }> = [];
  for (const drill of chosen) {
    const job = jobIdAt(new Date());
    const workflowId = cleanupWorkflowId(drill.machine, drill.job);
    const handle = await client.workflow.start('cleanupTestFailover', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId,
      args: [
        {
          job,
          machine: drill.machine,
          drillJob: drill.job,
          ...(drill.azure ? { azure: true } : {}),
          ...(drill.libvirt ? { libvirt: true } : {}),
        },
      ],
      // A cleanup that failed may be run again; two at once may not.
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      typedSearchAttributes: startAttributes(drill.machine, 'drill-cleanup'),
      ...jobSummary(`Cleanup of drill ${drill.job} of ${drill.machine}`),
    });
    const ref: JobRef = { job, workflowId, machine: drill.machine, kind: 'drill-cleanup' };
    out.push(options.wait === false ? { ref } : { ref, status: await jobResult<RecoveryStatus>(handle) });
  }
  return out;
}

/**
 * Fails one machine over: unplanned from `options.point`, or planned (writes stopped, final
 * point, no data loss). Only one failover per machine: a second is refused with the first's id.
 * With `wait` (default) returns once the machine is failed over, waiting for commit.
 */
export const startFailover = audited(
  'failover.start',
  (ctx: ControlContext, name: string, options: StartOptions & { planned?: boolean } = {}) =>
    startMachineFailover(ctx, name, options),
  (_ctx, name, options?) => ({
    target: name,
    details: {
      planned: options?.planned ?? false,
      point: options?.planned ? undefined : (options?.point ?? 'latest'),
    },
  }),
);

async function startMachineFailover(
  ctx: ControlContext,
  name: string,
  options: StartOptions & { planned?: boolean } = {},
): Promise<{ ref: JobRef; status?: RecoveryStatus }> {
  checkName('machine', name);
  if (options.point !== undefined) checkPointSelector(options.point);
  const machine = await registeredMachine(ctx, name);
  const planned = options.planned ?? false;
  if (planned && options.point)
    throw new OperationError('a planned failover uses the final point it cuts: leave out --point', 'invalid');
  const point = planned ? undefined : await resolvePoint(ctx, name, options.point ?? 'latest');
  const settings = await settingsToStart(ctx, machine, 'failover');
  const job = jobIdAt(new Date());
  const workflowId = failoverWorkflowId(name, job);
  await takeFailoverLock(ctx, {
    machine: name,
    job,
    workflowId,
    state: 'running',
    at: new Date().toISOString(),
  });
  const client = await ctx.client();
  let handle: WorkflowHandle;
  try {
    handle = await client.workflow.start('failover', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId,
      args: [{ job, machine, planned, point, settings }],
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
      typedSearchAttributes: startAttributes(name, 'failover'),
      ...jobSummary(
        planned
          ? `Planned failover of ${name} (writes stopped, final point)`
          : `Unplanned failover of ${name} from point ${point?.id} (${point?.instant})`,
      ),
    });
  } catch (err) {
    const held = await ctx.vault.read<FailoverLock>(recoveryDocs.failoverLock(name));
    if (held?.value.job === job) await ctx.vault.remove(recoveryDocs.failoverLock(name));
    throw err;
  }
  const ref: JobRef = { job, workflowId, machine: name, kind: 'failover', pointId: point?.id };
  if (options.wait === false) return { ref };
  return { ref, status: await untilState(handle, recoveryStatusQuery, ['failed-over', 'committed']) };
}

/** The running (or committed) failover of a machine. */
async function failoverHandle(ctx: ControlContext, name: string): Promise<WorkflowHandle> {
  await registeredMachine(ctx, name);
  const lock = (await ctx.vault.read<FailoverLock>(recoveryDocs.failoverLock(name)))?.value;
  if (!lock || (await workflowState(ctx, lock.workflowId)) !== 'running') {
    throw new OperationError(
      lock?.state === 'committed'
        ? `the failover of ${name} (${lock.workflowId}) is already committed`
        : `no failover of ${name} is running; start one with \`osr failover start ${name}\``,
      'not-found',
    );
  }
  return (await ctx.client()).workflow.getHandle(lock.workflowId);
}

/** Commits a machine's failover: forward replication ends, replica and points are kept. */
export const commitFailover = audited(
  'failover.commit',
  (ctx: ControlContext, name: string) => commitMachineFailover(ctx, name),
  (_ctx, name) => ({ target: name }),
);

async function commitMachineFailover(ctx: ControlContext, name: string): Promise<RecoveryStatus> {
  const handle = await failoverHandle(ctx, name);
  await gate(ctx, 'machine-commit', name);
  const status = await updateOf(() => handle.executeUpdate(commitUpdate));
  await handle.result().catch(() => undefined);
  return status;
}

/** Rebuilds a failed-over machine's disks from another point. */
export const changeRecoveryPoint = audited(
  'failover.change-point',
  (ctx: ControlContext, name: string, selector: string) => changeMachinePoint(ctx, name, selector),
  (_ctx, name, point) => ({ target: name, details: { point } }),
);

async function changeMachinePoint(
  ctx: ControlContext,
  name: string,
  selector: string,
): Promise<RecoveryStatus> {
  checkName('machine', name);
  checkPointSelector(selector);
  const handle = await failoverHandle(ctx, name);
  const point = await resolvePoint(ctx, name, selector);
  return updateOf(() => handle.executeUpdate(changeRecoveryPointUpdate, { args: [{ point }] }));
}

export interface JobSummary {
  workflowId: string;
  machine?: string;
  kind?: string;
  state?: string;
  status: string;
  startTime: string;
  summary?: string;
}

/**
 * A job's status: `target` is a workflow id, a job id or a machine (its newest recovery job).
 * Without a target, the recovery jobs (newest first, at most 50).
 */
export async function recoveryStatus(
  ctx: ControlContext,
  target?: string,
): Promise<RecoveryStatus | JobSummary[]> {
  if (target !== undefined) checkName('job', target);
  const client = await ctx.client();
  if (target === undefined) return listJobs(ctx);
  let workflowId = target;
  if (!target.includes('/')) {
    const jobs = await listJobs(ctx);
    // A drill's job id names the drill, not its cleanup (whose workflow id ends with it too).
    const byJob = jobs.filter((j) => j.workflowId.endsWith(`/${target}`));
    const match =
      byJob.find((j) => j.kind !== 'drill-cleanup') ?? byJob[0] ?? jobs.find((j) => j.machine === target);
    if (!match)
      throw new OperationError(`no recovery job "${target}"; see \`osr failover status\``, 'not-found');
    workflowId = match.workflowId;
  }
  try {
    const status = await client.workflow.getHandle(workflowId).query(recoveryStatusQuery);
    return status.kind === 'drill' ? await withCleanup(ctx, status) : status;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError)
      throw new OperationError(`no recovery job ${workflowId}; see \`osr failover status\``, 'not-found');
    throw err;
  }
}

/** A drill's status says so once a cleanup of it completed (the drill's own workflow ended before). */
async function withCleanup(ctx: ControlContext, status: RecoveryStatus): Promise<RecoveryStatus> {
  const workflowId = cleanupWorkflowId(status.machine, status.job);
  try {
    const description = await (await ctx.client()).workflow.getHandle(workflowId).describe();
    if (description.status.name !== 'COMPLETED') return status;
    return {
      ...status,
      state: 'cleaned-up',
      cleanedUp: { workflowId, at: description.closeTime?.toISOString() },
    };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return status;
    throw err;
  }
}

async function listJobs(ctx: ControlContext): Promise<JobSummary[]> {
  const client = await ctx.client();
  const out: JobSummary[] = [];
  const query = `OsrJobKind IN ('drill', 'drill-cleanup', 'failover')`;
  for await (const wf of client.workflow.list({ query })) {
    const attrs = wf.typedSearchAttributes;
    out.push({
      workflowId: wf.workflowId,
      machine: attrs.get(OSR_MACHINE),
      kind: attrs.get(OSR_JOB_KIND),
      state: attrs.get(OSR_STATE),
      status: wf.status.name.toLowerCase(),
      startTime: wf.startTime.toISOString(),
      summary: (wf.memo?.summary as string | undefined) ?? undefined,
    });
    if (out.length >= 50) break;
  }
  return out.sort((a, b) => b.startTime.localeCompare(a.startTime));
}

async function updateOf(call: () => Promise<RecoveryStatus>): Promise<RecoveryStatus> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError || (err as Error).name === 'WorkflowUpdateFailedError') {
      const cause = (err as { cause?: Error }).cause;
      throw new OperationError(cause?.message ?? (err as Error).message, 'conflict');
    }
    throw err;
  }
}
