// One failover per machine: `failover-locks/<machine>.json`, created create-only before the
// failover workflow starts. A second start is refused with the first job's id; a lock whose
// workflow was terminated is taken over; a committed one stays until reprotect.
import { WorkflowNotFoundError } from '@temporalio/common';
import { recoveryDocs, type FailoverLock } from '../shared/recovery-types';
import { VaultConflictError } from '../lib/azure/vault';
import { OperationError, type ControlContext } from './context';

/** Takes the machine's failover lock, or refuses (conflict) saying which job holds it. */
export async function takeFailoverLock(ctx: ControlContext, lock: FailoverLock): Promise<void> {
  const doc = recoveryDocs.failoverLock(lock.machine);
  try {
    await ctx.vault.write(doc, lock);
    return;
  } catch (err) {
    if (!(err instanceof VaultConflictError)) throw err;
  }
  const current = await ctx.vault.read<FailoverLock>(doc);
  if (current) {
    const held = current.value;
    if (held.state === 'committed') {
      throw new OperationError(
        `machine ${lock.machine} was failed over by job ${held.job} and committed: it runs in the recovery site now; reprotect it before another failover`,
        'conflict',
      );
    }
    const state = await workflowState(ctx, held.workflowId);
    // A lock whose workflow is not there yet may be one being started right now.
    const starting = state === 'missing' && Date.now() - Date.parse(held.at) < 120_000;
    if (state === 'running' || starting) {
      throw new OperationError(
        `a failover of ${lock.machine} is already running: ${held.workflowId}. Commit it (osr failover commit ${lock.machine}) or change its point; only one failover per machine`,
        'conflict',
      );
    }
  }
  // The holder ended without releasing (terminated): take the lock over, unless someone else just did.
  try {
    await ctx.vault.write(doc, lock, current?.etag);
  } catch (err) {
    if (!(err instanceof VaultConflictError)) throw err;
    throw new OperationError(`another failover of ${lock.machine} was started at the same time`, 'conflict');
  }
}

export async function workflowState(
  ctx: ControlContext,
  workflowId: string,
): Promise<'running' | 'closed' | 'missing'> {
  try {
    const client = await ctx.client();
    return (await client.workflow.getHandle(workflowId).describe()).status.name === 'RUNNING'
      ? 'running'
      : 'closed';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return 'missing';
    throw err;
  }
}
