// Consistency group operations of the control plane (CLI and HTTP API): create a group of
// protected machines, show it, list its group points, cut one now, delete it. Each group is one
// consistencyGroup workflow, `group/<name>`, and a vault document groups/<name>.json.
import type { WorkflowHandle } from '@temporalio/client';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdReusePolicy,
  WorkflowNotFoundError,
} from '@temporalio/common';
import { WorkflowUpdateFailedError } from '@temporalio/client/lib/errors';
import { groupDocs, groupWorkflowId, type ConsistencyGroup, type GroupPoint } from '../shared/group-types';
import type { ProtectedMachine } from '../shared/replication-types';
import { OSR_GROUP, OSR_JOB_KIND, OSR_STATE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { checkName } from '../shared/names';
import {
  disableGroupUpdate,
  groupStatusQuery,
  setIntervalUpdate,
  takeGroupPointUpdate,
  type GroupInput,
  type GroupStatus,
} from '../shared/contracts/consistency-group';
import { audited } from './audit';
import { checkAgentMembersCanHold } from './group-agents';
import { OperationError, type ControlContext, jobSummary } from './context';
import { untilState } from './job-results';
import { machineStatus } from './machines';

/** consistencyGroup's signature (workflows/consistency-group.ts), typed here without importing workflow code. */
type ConsistencyGroupWorkflow = (input: GroupInput) => Promise<GroupStatus>;

export interface GroupSpec {
  name: string;
  machines: string[];
  intervalSeconds?: number;
  /** Tests only: cut without holding writes, to show what the barrier prevents. */
  barrier?: boolean;
}

export const createGroup = audited(
  'group.create',
  (ctx: ControlContext, spec: GroupSpec) => create(ctx, spec),
  (_ctx, spec) => ({
    target: spec.name,
    details: { machines: spec.machines, intervalSeconds: spec.intervalSeconds },
  }),
);

async function create(ctx: ControlContext, spec: GroupSpec): Promise<GroupStatus> {
  checkName('group', spec.name);
  const machines = [...new Set(spec.machines)];
  for (const machine of machines) checkName('machine', machine);
  if (machines.length < 2)
    throw new OperationError('a consistency group needs at least two machines (--machines a,b)', 'invalid');
  const interval = spec.intervalSeconds ?? 300;
  if (!Number.isInteger(interval) || interval < 1)
    throw new OperationError(
      `--interval must be a whole number of seconds, at least 1 (got ${interval})`,
      'invalid',
    );
  const sites = new Set<string>();
  // A machine's host (or none: its site's process servers). One process server holds the writes.
  const hosts = new Map<string, string[]>();
  const members: ProtectedMachine[] = [];
  for (const name of machines) {
    const machine = await ctx.vault.machine(name);
    if (!machine)
      throw new OperationError(
        `machine ${name} is not protected: \`osr protect ${name} …\` first`,
        'not-found',
      );
    members.push(machine);
    sites.add(machine.site);
    const where = machine.host ?? '';
    hosts.set(where, [...(hosts.get(where) ?? []), name]);
    const status = await machineStatus(ctx, name);
    if (status.group)
      throw new OperationError(
        `machine ${name} already belongs to group ${status.group}: a machine is in at most one group`,
        'conflict',
      );
  }
  if (sites.size > 1)
    throw new OperationError(
      `the machines are on several sites (${[...sites].join(', ')}): one process server must hold all their writes, so a group lives on one site`,
      'invalid',
    );
  if (hosts.size > 1)
    throw new OperationError(
      `the machines are served by different process servers (${[...hosts].map(([h, ms]) => `${h ? `host ${h}` : 'the site'}: ${ms.join(', ')}`).join('; ')}): one process server must hold all their writes, so a group's members are on one host (or all on none)`,
      'invalid',
    );
  await checkAgentMembersCanHold(ctx, members);
  const host = [...hosts.keys()][0];
  const group: ConsistencyGroup = {
    name: spec.name,
    machines,
    site: [...sites][0] as string,
    ...(host ? { host } : {}),
    intervalSeconds: interval,
    createdAt: new Date().toISOString(),
  };
  const client = await ctx.client();
  let handle: WorkflowHandle<ConsistencyGroupWorkflow>;
  try {
    handle = await client.workflow.start<ConsistencyGroupWorkflow>('consistencyGroup', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: groupWorkflowId(group.name),
      args: [{ group, barrier: spec.barrier }],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      typedSearchAttributes: [
        { key: OSR_GROUP, value: group.name },
        { key: OSR_STATE, value: 'starting' },
        { key: OSR_JOB_KIND, value: 'group' },
      ],
      ...jobSummary(
        `Cuts consistent points of ${machines.join(', ')} every ${interval} s, holding their writes for each cut`,
      ),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError)
      throw new OperationError(
        `group ${group.name} exists already (osr group show ${group.name})`,
        'conflict',
      );
    throw err;
  }
  // The workflow checks every member can hold its writes before it joins them.
  const status = await untilState(handle, groupStatusQuery, ['active']).catch((err: Error) => {
    throw new OperationError(
      `group ${group.name} was not created: ${err.message.replace(/^group\/[^ ]+ failed: /, '')}`,
      'invalid',
    );
  });
  await ctx.vault.write(groupDocs.group(group.name), group, '*');
  return status;
}

export async function listGroups(ctx: ControlContext): Promise<ConsistencyGroup[]> {
  return ctx.vault.list<ConsistencyGroup>('groups/');
}

export async function groupStatus(ctx: ControlContext, name: string): Promise<GroupStatus> {
  return withGroup(ctx, name, (h) => h.query(groupStatusQuery));
}

export async function groupPoints(ctx: ControlContext, name: string): Promise<GroupPoint[]> {
  checkName('group', name);
  const points = await ctx.vault.list<GroupPoint>(groupDocs.points(name));
  return points.sort((a, b) => a.cut - b.cut);
}

export const takeGroupPoint = audited(
  'group.point',
  (ctx: ControlContext, name: string) => withGroup(ctx, name, (h) => h.executeUpdate(takeGroupPointUpdate)),
  (_ctx, name) => ({ target: name }),
);

export const setGroupInterval = audited(
  'group.set-interval',
  (ctx: ControlContext, name: string, intervalSeconds: number) =>
    withGroup(ctx, name, (h) => h.executeUpdate(setIntervalUpdate, { args: [{ intervalSeconds }] })),
  (_ctx, name, intervalSeconds) => ({ target: name, details: { intervalSeconds } }),
);

/** Ends the group: members go back to their own policies; group points stay in the catalog. */
export const deleteGroup = audited(
  'group.delete',
  async (ctx: ControlContext, name: string): Promise<GroupStatus> => {
    const status = await withGroup(ctx, name, (h) => h.executeUpdate(disableGroupUpdate));
    await ctx.vault.remove(groupDocs.group(name));
    return status;
  },
  (_ctx, name) => ({ target: name }),
);

async function withGroup<T>(
  ctx: ControlContext,
  name: string,
  fn: (h: WorkflowHandle<ConsistencyGroupWorkflow>) => Promise<T>,
): Promise<T> {
  checkName('group', name);
  const client = await ctx.client();
  try {
    return await fn(client.workflow.getHandle<ConsistencyGroupWorkflow>(groupWorkflowId(name)));
  } catch (err) {
    if (err instanceof WorkflowNotFoundError)
      throw new OperationError(`no consistency group ${name} (osr group list)`, 'not-found');
    if (err instanceof WorkflowUpdateFailedError) {
      const cause = (err as { cause?: Error }).cause;
      throw new OperationError(cause?.message ?? err.message, 'conflict');
    }
    throw err;
  }
}
