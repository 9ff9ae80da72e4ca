// OSR jobs as Temporal sees them: the running workflows that carry the OSR search attributes
// (the same filter an operator types in the Web UI), and one job's progress from its status query.
import type { WorkflowExecutionInfo } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { OperationError, type ControlContext } from '../operations/context';
import { JOB_KINDS } from '../shared/job-kinds';
import { checkName, isName } from '../shared/names';
import { OSR_JOB_KIND, OSR_MACHINE, OSR_STATE } from '../shared/search-attributes';

/** Where a job's progress is followed. */
export function jobLocation(workflowId: string): string {
  return `/v1/jobs/${encodeURIComponent(workflowId)}`;
}

const MAX_JOBS = 200;

export interface JobView {
  workflowId: string;
  runId: string;
  kind?: string;
  machine?: string;
  /** OsrState: the job's own state (protected, syncing, ready, failed-over, …). */
  state?: string;
  /** Temporal's execution status: running, completed, failed, … */
  status: string;
  startTime: string;
  summary?: string;
}

function view(wf: Omit<WorkflowExecutionInfo, 'raw'>): JobView {
  const attrs = wf.typedSearchAttributes;
  return {
    workflowId: wf.workflowId,
    runId: wf.runId,
    kind: attrs.get(OSR_JOB_KIND),
    machine: attrs.get(OSR_MACHINE),
    state: attrs.get(OSR_STATE),
    status: wf.status.name.toLowerCase(),
    startTime: wf.startTime.toISOString(),
    summary: typeof wf.memo?.summary === 'string' ? wf.memo.summary : undefined,
  };
}

export async function listRunningJobs(
  ctx: ControlContext,
  filter: { machine?: string; kind?: string } = {},
): Promise<JobView[]> {
  // Values are checked against fixed patterns before they go into the visibility query.
  if (filter.machine !== undefined && !isName('machine', filter.machine))
    throw new OperationError(
      `query "machine": "${filter.machine}" is not a machine name (lower-case letters, digits, dashes)`,
      'invalid',
    );
  if (filter.kind !== undefined && !(JOB_KINDS as readonly string[]).includes(filter.kind))
    throw new OperationError(`query "kind": must be one of ${JOB_KINDS.join(', ')}`, 'invalid');
  const kinds = filter.kind ? [filter.kind] : JOB_KINDS;
  let query = `ExecutionStatus = 'Running' AND OsrJobKind IN (${kinds.map((k) => `'${k}'`).join(', ')})`;
  if (filter.machine) query += ` AND OsrMachine = '${filter.machine}'`;
  const client = await ctx.client();
  const out: JobView[] = [];
  for await (const wf of client.workflow.list({ query })) {
    out.push(view(wf));
    if (out.length >= MAX_JOBS) break;
  }
  return out.sort((a, b) => b.startTime.localeCompare(a.startTime));
}

/** A job and its progress: the answer of its `status` query (machine status or recovery status). */
export async function jobStatus(
  ctx: ControlContext,
  workflowId: string,
): Promise<JobView & { progress?: unknown; note?: string }> {
  checkName('job', workflowId);
  const client = await ctx.client();
  const handle = client.workflow.getHandle(workflowId);
  let description: Awaited<ReturnType<typeof handle.describe>>;
  try {
    description = await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw notFound(workflowId);
    throw err;
  }
  const job = view(description);
  // Workflows without OSR's attributes are not OSR's to show.
  if (!job.kind) throw notFound(workflowId);
  try {
    return { ...job, progress: await handle.query<unknown>('status') };
  } catch (err) {
    return { ...job, note: `no progress available: ${(err as Error).message}` };
  }
}

function notFound(workflowId: string): OperationError {
  return new OperationError(
    `no OSR job ${workflowId}; GET /v1/jobs lists the running ones (encode "/" in the id as %2F)`,
    'not-found',
  );
}
