// Starting a machine's protection: the source check, run on the machine's own host by a process
// server (the control plane may be anywhere), and the protectMachine workflow with its id, task
// queue and search attributes. `osr protect` (machines.ts) and re-enable after failback (a
// control activity) both start protection here.
import { randomUUID } from 'node:crypto';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { TimeoutFailure, WorkflowIdConflictPolicy, WorkflowIdReusePolicy } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client/lib/errors';
import type { ProtectedMachine, ReplicationPolicy } from '../shared/replication-types';
import { OSR_JOB_KIND, OSR_MACHINE, OSR_STATE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import {
  protectWorkflowId,
  type MachineStatus,
  type ProtectInput,
} from '../shared/contracts/protect-machine';
import type { CheckSourceWorkflow } from '../shared/contracts/check-source';
import type { AzureReadiness } from '../shared/azure-readiness';
import { OperationError, type ControlContext, jobSummary } from './context';
import { workflowState } from './failover-lock';

/** protectMachine's signature (workflows/protect-machine.ts), typed here without importing workflow code. */
export type ProtectMachineWorkflow = (input: ProtectInput) => Promise<MachineStatus>;

export interface StartProtectionInput {
  machine: ProtectedMachine;
  policy: ReplicationPolicy;
  maxCyclesPerRun?: number;
  /** `fail`: a running protection is a conflict (`osr protect`); `use-existing`: keep it (a retried re-enable). */
  ifRunning: 'fail' | 'use-existing';
  summary: string;
}

/**
 * Starts a machine's protectMachine workflow (id, task queue, search attributes): `osr protect`
 * and re-enable after failback (a control activity, with the worker's client) both start it here.
 */
export async function startProtection(
  client: Client,
  input: StartProtectionInput,
): Promise<WorkflowHandle<ProtectMachineWorkflow>> {
  const { machine, policy } = input;
  return client.workflow.start<ProtectMachineWorkflow>('protectMachine', {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId: protectWorkflowId(machine.name),
    args: [{ machine, policy, maxCyclesPerRun: input.maxCyclesPerRun }],
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    workflowIdConflictPolicy:
      input.ifRunning === 'fail' ? WorkflowIdConflictPolicy.FAIL : WorkflowIdConflictPolicy.USE_EXISTING,
    typedSearchAttributes: [
      { key: OSR_MACHINE, value: machine.name },
      { key: OSR_STATE, value: 'enabling' },
      { key: OSR_JOB_KIND, value: 'protect' },
    ],
    ...jobSummary(input.summary),
  });
}

/** How long the control worker may take to run the source check at all. */
const CHECK_SOURCE_WORKFLOW_SECONDS = 60;

/**
 * Refuses, before anything is started or recorded, a --qmp path that is no QMP monitor (missing, a
 * plain file, a dead socket, an NBD socket). The socket is on the machine's host, which this
 * process may not be: a process server of the machine's site looks (checkSource workflow,
 * probeSource activity). A monitor held silently by another client is accepted.
 */
export async function checkSourceOnItsHost(
  ctx: ControlContext,
  options: {
    name: string;
    site: string;
    host?: string;
    source: ProtectedMachine['source'];
    guestAgentSocket?: string;
  },
): Promise<{ azureReadiness?: AzureReadiness; domainXml?: string }> {
  const { source, site } = options;
  // An agent's machine was checked in the vault (sourceOf); the agent itself refuses a disk in
  // use when tracking is enabled, and the machine's status says so.
  if (source.type === 'agent') return {};
  const client = await ctx.client();
  const registered = (await ctx.vault.machines()).filter((m) => m.site === site && m.name !== options.name);
  const probe =
    source.type === 'libvirt'
      ? { libvirt: { uri: source.uri, domain: source.domain } }
      : {
          qmpSocket: source.qmpSocket,
          nbdSocket: source.nbdSocket,
          others: registered.flatMap((m) =>
            m.source.type === 'qemu' ? [{ name: m.name, qmpSocket: m.source.qmpSocket }] : [],
          ),
        };
  let result;
  try {
    result = await client.workflow.execute<CheckSourceWorkflow>('checkSource', {
      taskQueue: CONTROL_TASK_QUEUE,
      // Unique per call: two protects of one name in the same millisecond each get their check
      // (the conflict between them is decided when protectMachine starts).
      workflowId: `check-source/${options.name}/${new Date().toISOString()}-${randomUUID().slice(0, 8)}`,
      args: [
        {
          site,
          host: options.host,
          machine: options.name,
          disks: source.disks,
          guestAgentSocket: options.guestAgentSocket,
          ...probe,
        },
      ],
      workflowExecutionTimeout: `${CHECK_SOURCE_WORKFLOW_SECONDS}s`,
    });
  } catch (err) {
    if (err instanceof WorkflowFailedError && err.cause instanceof TimeoutFailure)
      throw new OperationError(
        `the source check of ${options.name} did not run within ${CHECK_SOURCE_WORKFLOW_SECONDS} s: is the control worker running? (\`osr doctor\`). Nothing was started.`,
        'unavailable',
      );
    throw err;
  }
  if (result.ok) {
    // A libvirt domain is the same source when it is the same domain of the same libvirt.
    const sameSource = registered.filter((m) =>
      source.type === 'libvirt'
        ? m.source.type === 'libvirt' && m.source.uri === source.uri && m.source.domain === source.domain
        : result.sameSocket?.includes(m.name),
    );
    await refuseSharedDisks(ctx, { name: options.name, source }, sameSource, result.disks);
    return { azureReadiness: result.azureReadiness, domainXml: result.domainXml };
  }
  // A refusal's message already says that nothing was started.
  if (result.problem === 'refused') throw new OperationError(result.message, 'invalid');
  throw new OperationError(
    `${result.message.replace(/\.$/, '')}. Nothing was started.`,
    result.problem === 'unavailable' ? 'unavailable' : 'invalid',
  );
}

/**
 * Two machines on the same source disk would share its dirty bitmaps and each lose the other's
 * changes: refuses (conflict) when a machine whose protection runs uses the same QMP monitor and
 * an overlapping disk set (no --disks: all the source's disks).
 */
async function refuseSharedDisks(
  ctx: ControlContext,
  options: { name: string; source: ProtectedMachine['source'] },
  sameSocket: ProtectedMachine[],
  sourceDisks: string[] | undefined,
): Promise<void> {
  const diskSet = (disks: string[] | undefined) => disks ?? sourceDisks;
  const wanted = diskSet(options.source.disks);
  const where = (s: ProtectedMachine['source']) =>
    s.type === 'libvirt'
      ? `libvirt domain ${s.domain} (host ${s.host})`
      : s.type === 'agent'
        ? `agent ${s.agentId}`
        : s.qmpSocket;
  for (const other of sameSocket) {
    const theirs = diskSet(other.source.disks);
    const shared = wanted && theirs ? wanted.filter((d) => theirs.includes(d)).sort() : undefined;
    if (shared && shared.length === 0) continue;
    if ((await workflowState(ctx, protectWorkflowId(other.name))) !== 'running') continue;
    const which = shared ? `disk${shared.length > 1 ? 's' : ''} ${shared.join(', ')}` : 'its disks';
    throw new OperationError(
      `machine ${other.name} already protects ${which} of ${where(options.source)}${where(other.source) === where(options.source) ? '' : ` (its QMP socket: ${where(other.source)})`}: two protections of one disk would share its change tracking. Unprotect it first (\`osr unprotect ${other.name}\`), or protect other disks of this source with --disks. Nothing was started.`,
      'conflict',
    );
  }
}
