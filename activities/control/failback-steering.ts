// What failback and re-enable ask of other workflows and of the vault. Workflows cannot send
// updates to other workflows or start a workflow that outlives them, so these activities do it
// with the worker's own Temporal client (Context.client), heartbeating while they wait.
import { FAILURE } from '../../shared/failures';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowNotFoundError } from '@temporalio/client';
import { failbackDocs, type FailbackRecord } from '../../shared/failback-types';
import { recoveryDocs, type FailoverLock } from '../../shared/recovery-types';
import { Vault } from '../../lib/azure/vault';
import {
  finalCycleUpdate,
  reprotectStatusQuery,
  type FinalCycleResult,
} from '../../shared/contracts/reprotect';
import { protectWorkflowId, statusQuery } from '../../shared/contracts/protect-machine';
import { startProtection } from '../../operations/protection-start';
import type { WorkerDeps } from '../deps';
import { withHeartbeat } from '../common/with-heartbeat';
import { awaitWorkflowState } from '../common/await-workflow';

/** Failure type: the reprotect workflow refused or failed the final cycle. Non-retryable. */
export const FINAL_CYCLE_REFUSED = FAILURE.FinalCycleRefused;

/** Asks the reprotect workflow for its final cycle and waits for it to be applied. */
export function finalReverseCycle(input: { workflowId: string }): Promise<FinalCycleResult> {
  return withHeartbeat(async () => {
    const handle = Context.current().client.workflow.getHandle(input.workflowId);
    try {
      return await handle.executeUpdate(finalCycleUpdate);
    } catch (err) {
      const cause = (err as { cause?: Error }).cause;
      throw ApplicationFailure.nonRetryable(cause?.message ?? (err as Error).message, FINAL_CYCLE_REFUSED);
    }
  });
}

/** Starts forward replication of the machine again, as `osr protect` does, from its registration. */
export async function startForwardReplication(deps: WorkerDeps, input: { machine: string }): Promise<string> {
  const machine = await deps.vault.machine(input.machine);
  if (!machine) throw ApplicationFailure.nonRetryable(`machine ${input.machine} is not registered`);
  const policy = await deps.vault.policy(machine.policy);
  if (!policy) throw ApplicationFailure.nonRetryable(`policy ${machine.policy} of ${input.machine} is gone`);
  const client = Context.current().client;
  const workflowId = protectWorkflowId(machine.name);
  try {
    const running = (await client.workflow.getHandle(workflowId).describe()).status.name === 'RUNNING';
    if (running) return workflowId; // a retried attempt started it already
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
  await startProtection(client, {
    machine,
    policy,
    ifRunning: 'use-existing',
    summary: `Protects ${machine.name} again after failback (resync against the kept replica)`,
  });
  return workflowId;
}

/** Waits until forward replication has published a point after its (re)sync; returns its counters. */
export function awaitForwardSynced(input: { machine: string }): Promise<{
  bytesSent: number;
  bytesChanged: number;
  cycles: number;
  diskBytes: number;
  lastPoint: string;
}> {
  const handle = Context.current().client.workflow.getHandle(protectWorkflowId(input.machine));
  return awaitWorkflowState(async () => {
    const status = await handle.query(statusQuery).catch(() => undefined);
    if (status && status.state === 'protected' && status.stats.cycles > 0 && status.lastPoint) {
      return {
        bytesSent: status.stats.bytesSent,
        bytesChanged: status.stats.bytesChanged,
        cycles: status.stats.cycles,
        diskBytes: status.disks.reduce((a, d) => a + d.sizeBytes, 0),
        lastPoint: status.lastPoint.id,
      };
    }
    const described = await handle.describe();
    if (described.status.name !== 'RUNNING')
      throw ApplicationFailure.nonRetryable(
        `forward replication of ${input.machine} ended (${described.status.name.toLowerCase()}) before its first point`,
      );
    return undefined;
  });
}

/** Sets the machine's failback stage (and what else is given) in the vault. */
export async function recordFailbackStage(
  deps: WorkerDeps,
  input: Partial<FailbackRecord> & Pick<FailbackRecord, 'machine' | 'stage'>,
): Promise<FailbackRecord> {
  return deps.vault.update<FailbackRecord>(failbackDocs.record(input.machine), (current) => ({
    ...(current ?? { failoverJob: input.failoverJob ?? '' }),
    ...input,
    at: new Date().toISOString(),
  }));
}

/** Re-enable: the machine may be failed over again, and its registration follows new disks. */
export async function finishReenable(deps: WorkerDeps, input: { machine: string }): Promise<void> {
  const lock = await deps.vault.read<FailoverLock>(recoveryDocs.failoverLock(input.machine));
  if (lock?.value.state === 'committed') await deps.vault.remove(recoveryDocs.failoverLock(input.machine));
}

/** The failback record's new disks become the machine's source (original disks were gone). */
export async function adoptNewDisks(deps: WorkerDeps, input: { machine: string }): Promise<boolean> {
  const record = (await deps.vault.read<FailbackRecord>(failbackDocs.record(input.machine)))?.value;
  if (!record?.newDisks) return false;
  const nd = record.newDisks;
  await deps.vault.update(Vault.machineDoc(input.machine), (current: Record<string, unknown> | undefined) => {
    if (!current) throw new Error(`machine ${input.machine} is not registered`);
    const src = current.source as Record<string, unknown>;
    if (src.type === 'libvirt')
      throw ApplicationFailure.nonRetryable(
        `the original domain of ${input.machine} was gone, so failback wrote new disks in ${nd.dir}: define the domain ${String(src.domain)} on them (\`virsh define\`), then re-enable again`,
      );
    return { ...current, source: { ...src, qmpSocket: nd.qmpSocket, nbdSocket: nd.nbdSocket } };
  });
  return true;
}

/** A plan's reprotect child: returns once its diff resync is applied; fails if it stopped or ended. */
export function awaitReprotected(input: { workflowId: string }): Promise<string> {
  const handle = Context.current().client.workflow.getHandle(input.workflowId);
  return awaitWorkflowState(async () => {
    const status = await handle.query(reprotectStatusQuery).catch(() => undefined);
    if (status?.state === 'protected' || status?.state === 'synced') return status.state;
    const described = await handle.describe().catch(() => undefined);
    if (status?.state === 'stopped' || (described && described.status.name !== 'RUNNING'))
      throw ApplicationFailure.nonRetryable(
        `${input.workflowId} ended before its resync was applied (${status?.state ?? described?.status.name})`,
        FAILURE.ReprotectFailed,
      );
    return undefined;
  });
}
