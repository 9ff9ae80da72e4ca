// Discovery: what each added host runs, asked of a process server of that host (the discoverHost
// workflow runs its activity on the host's own task queue), so the CLI and `osr serve` never need
// to sit on the host. `osr host add` uses the same call as its check that the host answers.
import { randomUUID } from 'node:crypto';
import { TimeoutFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client/lib/errors';
import type { DiscoveredMachine, HostRecord } from '../shared/host-types';
import {
  discoverHostWorkflowId,
  type DiscoverHostResult,
  type DiscoverHostWorkflow,
} from '../shared/contracts/discover-host';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { OperationError, type ControlContext } from './context';
import { agentMachines, agentProtections, listAgents, markAgentVms } from './agents';
import { getHost, listHosts } from './hosts';
import { protect } from './machines';

/** How long the control worker may take to run the discovery workflow at all. */
const WORKFLOW_SECONDS = 90;

/** One host's discovery, through a process server of the host. */
export async function discoverOn(
  ctx: ControlContext,
  host: HostRecord,
  timeoutSeconds?: number,
): Promise<DiscoverHostResult> {
  const registered = (await ctx.vault.machines()).map((m) => ({
    name: m.name,
    qmpSocket: 'qmpSocket' in m.source ? m.source.qmpSocket : undefined,
  }));
  const client = await ctx.client();
  try {
    return await client.workflow.execute<DiscoverHostWorkflow>('discoverHost', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: discoverHostWorkflowId(
        host.name,
        `${new Date().toISOString()}-${randomUUID().slice(0, 8)}`,
      ),
      args: [{ host, registered, timeoutSeconds }],
      workflowExecutionTimeout: `${WORKFLOW_SECONDS}s`,
    });
  } catch (err) {
    if (err instanceof WorkflowFailedError && err.cause instanceof TimeoutFailure)
      throw new OperationError(
        `discovery of host ${host.name} did not run within ${WORKFLOW_SECONDS} s: is the control worker running? (\`osr doctor\`)`,
        'unavailable',
      );
    throw err;
  }
}

/** A failed discovery as the refusal the CLI and API show: no process server is "unavailable". */
export function discoveryRefusal(
  result: Extract<DiscoverHostResult, { ok: false }>,
  suffix = '',
): OperationError {
  return new OperationError(
    `${result.message.replace(/\.$/, '')}${suffix}`,
    result.problem === 'no-server' || result.problem === 'unavailable' ? 'unavailable' : 'invalid',
  );
}

export interface HostDiscovery {
  host: string;
  kind: HostRecord['kind'];
  ok: boolean;
  machines: number;
  problem?: string;
  message?: string;
}

export interface DiscoveryResult {
  machines: DiscoveredMachine[];
  /** Each host asked: how many machines, or why it could not be read (the list is then partial). */
  hosts: HostDiscovery[];
}

/** Every added host's machines (or one host's: `hostName`), hosts asked in parallel. */
export async function discover(ctx: ControlContext, hostName?: string): Promise<DiscoveryResult> {
  const hosts = hostName ? [await getHost(ctx, hostName)] : await listHosts(ctx);
  const results = await Promise.all(hosts.map((h) => discoverOn(ctx, h)));
  const out: DiscoveryResult = { machines: [], hosts: [] };
  for (const [i, r] of results.entries()) {
    const h = hosts[i] as HostRecord;
    if (r.ok) {
      out.machines.push(...r.machines);
      out.hosts.push({ host: h.name, kind: h.kind, ok: true, machines: r.machines.length });
    } else
      out.hosts.push({
        host: h.name,
        kind: h.kind,
        ok: false,
        machines: 0,
        problem: r.problem,
        message: r.message,
      });
  }
  // Machines with an enrolled Mobility agent: known from the vault, no host to ask; vCenter VMs
  // with one are shown protectable through it. One host asked that is no vCenter needs neither.
  if (!hostName || hosts.some((h) => h.kind === 'vcenter')) {
    const [agents, machines] = await Promise.all([listAgents(ctx), ctx.vault.machines()]);
    const protectedBy = agentProtections(machines);
    out.machines = markAgentVms(out.machines, agents, protectedBy);
    if (!hostName) out.machines.push(...agentMachines(agents, protectedBy));
  }
  // One host asked by name that cannot be read is a refusal, not an empty list.
  const only = out.hosts[0];
  if (hostName && only && !only.ok)
    throw discoveryRefusal({ ok: false, problem: only.problem ?? 'failed', message: only.message ?? '' });
  return out;
}

/**
 * Protects a machine as its host discovered it (the dashboard's Protect button): the monitor
 * socket is the one the host's process server found, not a path taken from the caller. Only
 * machines whose changes OSR can track from the host (QEMU sockets, libvirt domains with a qcow2
 * disk) can be.
 */
export async function protectDiscovered(
  ctx: ControlContext,
  input: { host: string; machine: string; as?: string; policy?: string; nbdSocket?: string },
): Promise<{ workflowId: string; machine: string }> {
  const host = await getHost(ctx, input.host);
  const result = await discoverOn(ctx, host);
  if (!result.ok) throw discoveryRefusal(result);
  const found = result.machines.find((m) => m.name === input.machine);
  if (!found)
    throw new OperationError(
      `host ${host.name} has no machine ${input.machine}; it has ${result.machines.map((m) => m.name).join(', ') || 'none'} (\`osr discover --host ${host.name}\`)`,
      'not-found',
    );
  if (found.protectedAs)
    throw new OperationError(
      `${input.machine} on ${host.name} is already protected as ${found.protectedAs}`,
      'conflict',
    );
  if (host.kind === 'libvirt' && found.changeTracking.possible) {
    // A libvirt domain is named, not a socket: the host's process server finds its disks.
    const started = await protect(ctx, {
      name: input.as ?? input.machine,
      host: host.name,
      domain: found.name,
      policy: input.policy,
    });
    return { workflowId: started.workflowId, machine: started.machine.name };
  }
  const qmpSocket = found.details?.qmpSocket;
  if (!found.changeTracking.possible || !qmpSocket)
    throw new OperationError(
      `${input.machine} on ${host.name} cannot be protected from the host: ${found.changeTracking.reason ?? `a ${host.kind} machine is protected with \`osr protect\``}`,
      'invalid',
    );
  const started = await protect(ctx, {
    name: input.as ?? input.machine,
    qmpSocket,
    nbdSocket: input.nbdSocket,
    policy: input.policy,
    host: host.name,
  });
  return { workflowId: started.workflowId, machine: started.machine.name };
}
