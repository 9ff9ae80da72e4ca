// Whether a machine can run a failback stage now, and that stage's workflow input: nothing is
// started here. The single-machine stages and the plan stages (failback.ts) both check here first,
// so a plan lists every machine's problem before anything starts.
import { WorkflowNotFoundError } from '@temporalio/common';
import { failbackDocs, reverseId, type FailbackRecord } from '../shared/failback-types';
import { recoveryDocs, type FailoverLock, type RecoveredMachine } from '../shared/recovery-types';
import type { ProtectedMachine, QuiesceHooks } from '../shared/replication-types';
import { jobIdAt } from '../shared/contracts/recovery-job';
import { checkName } from '../shared/names';
import { failbackWorkflowId, type FailbackInput } from '../shared/contracts/failback';
import { reenableWorkflowId, type ReenableInput } from '../shared/contracts/reenable';
import {
  reprotectStatusQuery,
  reprotectWorkflowId,
  type ReprotectInput,
  type ReprotectStatus,
} from '../shared/contracts/reprotect';
import { remoteLibvirt } from '../lib/libvirt/remote-host';
import { OperationError, type ControlContext } from './context';
import { registeredMachine } from './machines';
import { getPolicy } from './policies';
import { getAgent } from './agents';

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

export async function workflowRunning(ctx: ControlContext, workflowId: string): Promise<boolean> {
  try {
    const client = await ctx.client();
    return (await client.workflow.getHandle(workflowId).describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

async function failbackRecord(ctx: ControlContext, name: string): Promise<FailbackRecord | undefined> {
  checkName('machine', name);
  return (await ctx.vault.read<FailbackRecord>(failbackDocs.record(name)))?.value;
}

/** The committed failover a failback starts from, with its recovery-site copy. */
async function committedFailover(ctx: ControlContext, name: string): Promise<RecoveredMachine> {
  checkName('machine', name);
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
  if (!record.libvirt && !record.materialized?.qmpSocket)
    throw new OperationError(
      `the failed-over ${name} does not run in the recovery site (its failover disks were not materialized), so there is nothing to replicate back: set \`osr failover configure ${name} --materialize qcow2\` (or \`--target libvirt\`) before failing over`,
      'conflict',
    );
  return record;
}

/**
 * What reprotect reads in the recovery site, and which of its disks (nodes) replicates onto which
 * original disk: the materialized daemon serves disk i of the failover as node disk<i>; a domain
 * recovered into libvirt is a libvirt source like any other, its disks named as the original's.
 */
function reverseSource(failedOver: RecoveredMachine): {
  source: ProtectedMachine['source'];
  nodes: Record<string, string>;
} {
  const materialized = failedOver.materialized as NonNullable<RecoveredMachine['materialized']>;
  const nodes: Record<string, string> = {};
  if (failedOver.libvirt) {
    const { host, uri, domain } = failedOver.libvirt;
    for (const f of materialized?.files ?? []) nodes[f.diskId] = f.diskId;
    const disks = Object.keys(nodes);
    return { source: { type: 'libvirt', host, uri, domain, ...(disks.length ? { disks } : {}) }, nodes };
  }
  materialized.files.forEach((f, i) => (nodes[f.diskId] = `disk${i}`));
  return {
    source: { type: 'qemu', qmpSocket: materialized.qmpSocket!, nbdSocket: materialized.nbdSocket },
    nodes,
  };
}

/** Validates a reprotect of one machine and builds its workflow input (nothing is started). */
export async function prepareReprotect(
  ctx: ControlContext,
  name: string,
  options: ReprotectOptions,
): Promise<{ workflowId: string; input: ReprotectInput }> {
  const machine = await registeredMachine(ctx, name);
  // Its agent writes an agent machine's disks: it must be there to start with.
  if (machine.source.type === 'agent') {
    const agent = await getAgent(ctx, machine.source.agentId);
    if (agent.state !== 'connected')
      throw new OperationError(
        `${name}'s agent ${agent.id} is ${agent.state}: failback writes the machine's disks through it. Start the machine (its agent connects by itself; see \`osr agent show ${agent.id}\`) and reprotect again`,
        'conflict',
      );
  }
  if (machine.source.type === 'libvirt' && remoteLibvirt(machine.source.uri))
    throw new OperationError(
      `${name} is a domain of a remote libvirt host (${machine.source.uri}): failing back onto it is not built yet (the master target writes the domain's image files, which are on that host, not beside it). Fail back by hand: export the point (\`osr export ${name} --point latest --out …\`) and copy it there`,
      'invalid',
    );
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
  const policy = await getPolicy(ctx, machine.policy);
  const { source, nodes } = reverseSource(failedOver);
  const reverse: ProtectedMachine = {
    name: reverseId(name),
    site: ctx.config.recoverySite,
    // A recovered libvirt domain is read by its recovery host's process servers.
    ...(source.type === 'libvirt' ? { host: source.host } : {}),
    source,
    policy: machine.policy,
    ...(options.quiesce ? { quiesce: options.quiesce } : {}),
    createdAt: new Date().toISOString(),
  };
  return {
    workflowId,
    input: {
      job: jobIdAt(new Date()),
      machine,
      failoverJob: failedOver.job,
      source: reverse,
      nodes,
      intervalSeconds: options.intervalSeconds ?? policy.crashPointSeconds,
      maxCyclesPerRun: options.maxCyclesPerRun,
    },
  };
}

export async function reprotectStatus(ctx: ControlContext, name: string): Promise<ReprotectStatus> {
  checkName('machine', name);
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

export async function prepareFailback(
  ctx: ControlContext,
  name: string,
): Promise<{ workflowId: string; input: FailbackInput }> {
  const machine = await registeredMachine(ctx, name);
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

export async function prepareReenable(
  ctx: ControlContext,
  name: string,
): Promise<{ workflowId: string; input: ReenableInput }> {
  const machine = await registeredMachine(ctx, name);
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
    input: {
      job,
      machine: name,
      site: machine.site,
      failoverJob: record.failoverJob,
      ...(machine.source.type === 'agent' ? { agentId: machine.source.agentId } : {}),
    },
  };
}
