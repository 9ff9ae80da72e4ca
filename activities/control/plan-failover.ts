// What a recoveryPlan workflow cannot do itself with its failover children: a workflow can
// neither query nor update another workflow, and a failover child completes only once committed.
// These activities watch a child until it is failed over, and commit it, through a client.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type { Client } from '@temporalio/client';
import type { OsrConfig } from '../../lib/config/config';
import { connectClient } from '../../operations/temporal-client';
import { commitUpdate } from '../../shared/contracts/failover';
import { recoveryStatusQuery } from '../../shared/contracts/recovery-job';

export function createPlanFailoverActivities(config: OsrConfig) {
  let client: Promise<Client> | undefined;
  const getClient = () => (client ??= connectClient(config));
  return {
    /** Returns once the failover child is failed over; fails if it failed. */
    async awaitFailedOver(input: { workflowId: string }): Promise<string> {
      const handle = (await getClient()).workflow.getHandle(input.workflowId);
      const ctx = Context.current();
      for (;;) {
        ctx.heartbeat();
        const status = await handle.query(recoveryStatusQuery).catch(() => undefined);
        if (status?.state === 'failed-over' || status?.state === 'committed') return status.state;
        if (status?.state === 'failed')
          throw ApplicationFailure.nonRetryable(
            `${input.workflowId} failed: ${status.error}`,
            FAILURE.RecoveryFailed,
          );
        await new Promise((r) => setTimeout(r, 500));
      }
    },
    /** Commits one machine's failover (idempotent: a committed one is left as is). */
    async commitMachineFailover(input: { workflowId: string }): Promise<string> {
      const handle = (await getClient()).workflow.getHandle(input.workflowId);
      const status = await handle.query(recoveryStatusQuery);
      if (status.state === 'committed') return status.state;
      return (await handle.executeUpdate(commitUpdate)).state;
    },
  };
}
