// Machine health as the control plane shows it (CLI, API, dashboard, /metrics, alerts):
// - a live status gets its group's failed or skipped cuts (the group workflow, not the member,
//   knows them), its agent's point-store alerts (the agent reports them, not the workflow), and
//   its health recomputed on the wall clock with shared/machine-health.ts;
// - a registered machine whose protectMachine workflow was ended outside OSR (cancelled,
//   terminated, failed, timed out from the Temporal UI or CLI) is named as such, with the fix;
// - `osr unprotect` of such a machine cleans up through the endProtection workflow.
import { rpoSecondsAt } from '../shared/rpo';
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError, WorkflowIdReusePolicy } from '@temporalio/common';
import { groupStatusQuery, type GroupAlert, type GroupStatus } from '../shared/contracts/consistency-group';
import { protectWorkflowId, type Alert, type MachineStatus } from '../shared/contracts/protect-machine';
import { groupWorkflowId, type ConsistencyGroup } from '../shared/group-types';
import { machineHealth, type MachineHealth } from '../shared/machine-health';
import type { ProtectedMachine } from '../shared/replication-types';
import { OSR_JOB_KIND, OSR_MACHINE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import type { EndProtectionResult, EndProtectionWorkflow } from '../shared/contracts/end-protection';
import { DEFAULT_POLICY } from '../shared/policy';
import type { ControlContext } from './context';
import {
  hostServerProblem,
  hostServers,
  listServers,
  type ServerView,
} from '../lib/observability/server-health';
import { getPolicy } from './policies';
import { agentStoreAlerts } from '../lib/agents/registry';

/** The state `osr status` shows for a machine whose protection was ended outside OSR. */
export const ENDED_OUTSIDE_OSR = 'ended-outside-osr';

export interface EndedProtection {
  /** `failed`: the workflow failed by itself (e.g. its enable step); otherwise ended outside OSR. */
  state: typeof ENDED_OUTSIDE_OSR | 'failed';
  workflowId: string;
  /** How the workflow closed: canceled, terminated, failed, timed-out, or missing (no history). */
  closedAs: string;
  closedAt?: string;
  reason: string;
  fix: string;
}

const ENDED = new Map([
  ['CANCELLED', 'canceled'],
  ['TERMINATED', 'terminated'],
  ['FAILED', 'failed'],
  ['TIMED_OUT', 'timed-out'],
]);

/**
 * The ended protection of a registered machine, or undefined (not registered, still running, or
 * completed through `osr unprotect`).
 */
export async function endedProtection(
  ctx: ControlContext,
  name: string,
): Promise<EndedProtection | undefined> {
  const machine = await ctx.vault.machine(name);
  if (!machine) return undefined;
  const workflowId = protectWorkflowId(name);
  const fix = `run \`osr unprotect ${name}\` to remove its registration and replica (--keep-replica keeps the replica and points), then \`osr protect ${name} --qmp …\` to protect it again`;
  const handle = (await ctx.client()).workflow.getHandle(workflowId);
  let status: string;
  let closedAt: Date | undefined;
  try {
    const description = await handle.describe();
    status = description.status.name;
    closedAt = description.closeTime;
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
    return {
      state: ENDED_OUTSIDE_OSR,
      workflowId,
      closedAs: 'missing',
      reason: `machine ${name} is registered but has no protectMachine workflow ${workflowId} (deleted, or past the namespace's retention)`,
      fix,
    };
  }
  const closedAs = ENDED.get(status);
  if (!closedAs) return undefined;
  let why = '';
  try {
    await handle.result();
  } catch (err) {
    let cause = err as Error & { cause?: unknown };
    while (cause.cause instanceof Error) cause = cause.cause as Error & { cause?: unknown };
    why = cause.message;
  }
  const how = closedAs === 'failed' ? 'failed' : `was ${closedAs} outside OSR`;
  return {
    state: closedAs === 'failed' ? 'failed' : ENDED_OUTSIDE_OSR,
    workflowId,
    closedAs,
    closedAt: closedAt?.toISOString(),
    reason: `its protectMachine workflow ${workflowId} ${how}${why ? ` (${why})` : ''}: nothing is replicated, no new recovery point is cut`,
    fix,
  };
}

/** An ended protection's health: always critical, nothing protects the machine any more. */
export function endedHealth(ended: EndedProtection): MachineHealth {
  return { level: 'critical', reasons: [`protection ended: ${ended.reason}`] };
}

/** What one listing reads once for all its machines instead of once per machine. */
export interface StatusReads {
  groups: Map<string, Promise<GroupStatus | undefined>>;
  /** The vault's machine records, when the caller has them already. */
  machines?: Map<string, ProtectedMachine>;
  /** The servers' heartbeats, read at the first machine on a host. */
  servers?: Promise<ServerView[]>;
}

/**
 * A live status as shown: its group's current cut alerts added (kind group-cut-failed or
 * group-cut-skipped, subject the group), RPO and health computed on the wall clock.
 * `reads` is shared across the machines of one listing.
 */
export async function finishStatus(
  ctx: ControlContext,
  status: MachineStatus,
  reads: StatusReads = { groups: new Map() },
): Promise<MachineStatus> {
  if (status.group) {
    let group = reads.groups.get(status.group);
    if (!group) {
      group = groupStatusOf(await ctx.client(), status.group);
      reads.groups.set(status.group, group);
    }
    const alerts = (await group)?.alerts ?? [];
    status.alerts = [...status.alerts, ...alerts.map((a) => memberAlert(status.group as string, a))];
  }
  const machine = reads.machines?.get(status.machine) ?? (await ctx.vault.machine(status.machine));
  // Recorded at protect, shown with the live status (a machine protected before the check has none).
  if (machine?.azureReadiness) status.azureReadiness = machine.azureReadiness;
  const hostAlert = await hostServerAlert(ctx, machine?.host, reads);
  if (hostAlert) status.alerts = [...status.alerts, hostAlert];
  // The workflow's copy of the agent's store alerts is from its last freeze (for the OsrHealth
  // search attribute); the vault's, from the agent's last report, is fresher: shown instead.
  if (machine?.source.type === 'agent')
    status.alerts = [
      ...status.alerts.filter((a) => a.kind !== 'agent-store-low' && a.kind !== 'agent-store-full'),
      ...(await storeAlertsOf(ctx, machine.source.agentId)),
    ];
  const now = Date.now();
  if (status.lastPoint) status.rpoSeconds = rpoSecondsAt(status.lastPoint.instant, now);
  status.health = machineHealth(status, now);
  return status;
}

/**
 * A machine on a host (`osr protect --host`) whose process servers are all stale or stopped: its
 * work waits on the host's queue with nobody to take it, so its status says so at once (read from
 * the heartbeats, not from the workflow, which only sees activities time out).
 */
async function hostServerAlert(
  ctx: ControlContext,
  host: string | undefined,
  reads: StatusReads,
): Promise<Alert | undefined> {
  if (!host) return undefined;
  reads.servers ??= listServers(ctx.vault, ctx.config);
  const [h] = hostServers(await reads.servers, [host]);
  const problem = h && hostServerProblem(h, ctx.config.health.heartbeatSeconds);
  if (!problem) return undefined;
  return {
    id: `host-server-lost-${host}`,
    at: new Date().toISOString(),
    severity: 'critical',
    kind: 'host-server-lost',
    message: problem,
    subject: host,
  };
}

/**
 * A machine protected by an agent whose point store is low on room or overflowing: from the agent's
 * own reports (lib/agents/store-alerts.ts), as fresh as its last heartbeat.
 */
async function storeAlertsOf(ctx: ControlContext, agentId: string): Promise<Alert[]> {
  return ((await agentStoreAlerts(ctx.vault, agentId, ctx.config.agents)) ?? []).map((a) => ({
    ...a,
    subject: agentId,
  }));
}

async function groupStatusOf(client: Client, group: string): Promise<GroupStatus | undefined> {
  try {
    return await client.workflow.getHandle(groupWorkflowId(group)).query(groupStatusQuery);
  } catch {
    return undefined; // the group is gone or not answering: its members' own status still shows
  }
}

function memberAlert(group: string, a: GroupAlert): Alert {
  return {
    id: `group-${a.id}`,
    at: a.at,
    severity: a.severity,
    kind: a.kind === 'cut-failed' ? 'group-cut-failed' : 'group-cut-skipped',
    message: `group ${group}: ${a.message}`,
    subject: group,
    count: a.count,
    lastAt: a.lastAt,
  };
}

/** Every group's current cut alerts, for the alert list (source group). */
export async function groupAlerts(
  ctx: ControlContext,
): Promise<Array<{ group: ConsistencyGroup; alert: GroupAlert }>> {
  const client = await ctx.client();
  const groups = await ctx.vault.list<ConsistencyGroup>('groups/');
  const out = await Promise.all(
    groups.map(async (group) => {
      const status = await groupStatusOf(client, group.name);
      return (status?.alerts ?? []).map((alert) => ({ group, alert }));
    }),
  );
  return out.flat();
}

/** Cleans up an ended protection (source tracking, replica unless kept) and waits for it. */
export async function cleanUpEndedProtection(
  ctx: ControlContext,
  machine: ProtectedMachine,
  keepReplica: boolean,
): Promise<EndProtectionResult> {
  const client = await ctx.client();
  return client.workflow.execute<EndProtectionWorkflow>('endProtection', {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId: `unprotect/${machine.name}/${Date.now()}`,
    args: [{ machine, keepReplica }],
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    typedSearchAttributes: [
      { key: OSR_MACHINE, value: machine.name },
      { key: OSR_JOB_KIND, value: 'unprotect' },
    ],
  });
}

/**
 * `osr unprotect` of a machine whose protection ended outside OSR: the cleanup its workflow's
 * disable would have done, run by endProtection; the caller then removes the registration.
 */
export async function unprotectEnded(
  ctx: ControlContext,
  name: string,
  ended: EndedProtection,
  keepReplica: boolean,
): Promise<MachineStatus> {
  const machine = await ctx.vault.machine(name);
  if (!machine) throw new Error(`machine ${name} is not in the vault`);
  await cleanUpEndedProtection(ctx, machine, keepReplica);
  const policy = await getPolicy(ctx, machine.policy).catch(() => DEFAULT_POLICY);
  return {
    machine: name,
    state: 'disabled',
    policy,
    disks: [],
    cycle: 0,
    // What the cleanup could not do (the source gone: nothing to remove on it) is in the
    // endProtection workflow's result (Temporal UI).
    alerts: [],
    stats: { cycles: 0, failedCycles: 0, bytesSent: 0, bytesChanged: 0 },
  };
}
