// What a recoveryPlan workflow cannot do itself with its failover children: a workflow can
// neither query nor update another workflow, and a failover child completes only once committed.
// These activities watch a child until it is failed over, and commit it, through the worker's own
// client (Context.client).
import { FAILURE } from '../../shared/failures';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { commitUpdate } from '../../shared/contracts/failover';
import { recoveryStatusQuery } from '../../shared/contracts/recovery-job';
import { awaitWorkflowState } from '../common/await-workflow';

export function createPlanFailoverActivities() {
  return {
    /** Returns once the failover child is failed over; fails if it failed. */
    awaitFailedOver(input: { workflowId: string }): Promise<string> {
      const handle = Context.current().client.workflow.getHandle(input.workflowId);
      return awaitWorkflowState(async () => {
        const status = await handle.query(recoveryStatusQuery).catch(() => undefined);
        if (status?.state === 'failed-over' || status?.state === 'committed') return status.state;
        if (status?.state === 'failed')
          throw ApplicationFailure.nonRetryable(
            `${input.workflowId} failed: ${status.error}`,
            FAILURE.RecoveryFailed,
          );
        return undefined;
      });
    },
    /** Commits one machine's failover (idempotent: a committed one is left as is). */
    async commitMachineFailover(input: { workflowId: string }): Promise<string> {
      const handle = Context.current().client.workflow.getHandle(input.workflowId);
      const status = await handle.query(recoveryStatusQuery);
      if (status.state === 'committed') return status.state;
      return (await handle.executeUpdate(commitUpdate)).state;
    },
  };
}
