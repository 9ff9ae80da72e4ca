// What a failover asks of the machine's protectMachine workflow, and its vault bookkeeping. Updates
// to another workflow cannot be sent from workflow code, so these activities send them with the
// worker's own Temporal client (Context.client) and wait for the answer.
import { Context } from '@temporalio/activity';
import { withHeartbeat } from '../common/with-heartbeat';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { CommitRecord, FailoverLock, RecoveredMachine } from '../../shared/recovery-types';
import { recoveryDocs } from '../../shared/recovery-types';
import type { RecoveryPoint } from '../../shared/replication-types';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { Vault } from '../../lib/azure/vault';
import {
  disableUpdate,
  protectWorkflowId,
  statusQuery,
  takePointUpdate,
} from '../../shared/contracts/protect-machine';
import type { WorkerDeps } from '../deps';

/** Failure type: forward replication cannot cut the final point (paused, disabled …). Non-retryable. */
export const FINAL_POINT_REFUSED = FAILURE.FinalPointRefused;

/** Asks protectMachine for a point now (after the source's writes stopped) and returns it whole. */
export async function cutFinalPoint(deps: WorkerDeps, input: { machine: string }): Promise<RecoveryPoint> {
  return withHeartbeat(async () => {
    const handle = Context.current().client.workflow.getHandle(protectWorkflowId(input.machine));
    let brief;
    try {
      brief = await handle.executeUpdate(takePointUpdate, {
        args: [{ kind: 'crash', tag: 'planned-failover' }],
      });
    } catch (err) {
      // A refusal by the validator or a failed cycle: say why, do not retry into the same wall.
      const cause = (err as { cause?: Error }).cause;
      throw ApplicationFailure.nonRetryable(
        `the final point of ${input.machine} could not be cut: ${cause?.message ?? (err as Error).message}`,
        FINAL_POINT_REFUSED,
      );
    }
    const point = (await deps.vault.points(input.machine)).find((p) => p.id === brief.id);
    if (!point) throw new Error(`point ${brief.id} of ${input.machine} is not in the catalog yet`);
    return point;
  });
}

/** Ends forward replication and keeps the replica and its points (what reprotect starts from). */
export async function endForwardReplication(
  deps: WorkerDeps,
  input: { machine: string; job: string },
): Promise<CommitRecord> {
  const ctx = Context.current();
  const handle = ctx.client.workflow.getHandle(protectWorkflowId(input.machine));
  let lastPoint: CommitRecord['lastPoint'];
  try {
    const running = (await handle.describe()).status.name === 'RUNNING';
    if (running) {
      const status = await handle.executeUpdate(disableUpdate, { args: [{ keepReplica: true }] });
      lastPoint = status.lastPoint;
    } else {
      lastPoint = (await handle.query(statusQuery).catch(() => undefined))?.lastPoint;
    }
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
  const replicaBlobs: string[] = [];
  const container = deps.blobService.getContainerClient(CONTAINERS.replica);
  for await (const item of container.listBlobsFlat({ prefix: `${input.machine}/` }))
    replicaBlobs.push(item.name);
  const record: CommitRecord = {
    at: new Date().toISOString(),
    replicaBlobs: replicaBlobs.sort(),
    keptPoints: (await deps.vault.points(input.machine)).length,
    ...(lastPoint ? { lastPoint } : {}),
  };
  await deps.vault.update<RecoveredMachine>(recoveryDocs.recovered(input.machine, input.job), (current) => {
    if (!current) throw new Error(`recovered/${input.machine}/${input.job} is not in the vault`);
    return { ...current, committed: record };
  });
  await setLock(deps.vault, input.machine, input.job, 'committed');
  return record;
}

/** Removes the machine's failover lock if this job holds it (an uncommitted failover ended). */
export async function releaseFailoverLock(
  deps: WorkerDeps,
  input: { machine: string; job: string },
): Promise<void> {
  const doc = recoveryDocs.failoverLock(input.machine);
  const lock = await deps.vault.read<FailoverLock>(doc);
  if (lock?.value.job === input.job && lock.value.state === 'running') await deps.vault.remove(doc);
}

async function setLock(
  vault: Vault,
  machine: string,
  job: string,
  state: FailoverLock['state'],
): Promise<void> {
  await vault.update<FailoverLock>(recoveryDocs.failoverLock(machine), (current) => {
    if (!current || current.job !== job)
      throw new Error(`the failover lock of ${machine} is not held by job ${job}`);
    return { ...current, state, at: new Date().toISOString() };
  });
}
