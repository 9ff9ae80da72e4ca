// Waiting on an operation's workflow: its result with a failure turned into an operator-facing
// refusal, or its status query until it reaches a state.
import type { WorkflowHandle } from '@temporalio/client';
import { WorkflowFailedError } from '@temporalio/client/lib/errors';
import { ActivityFailure, ChildWorkflowFailure, type QueryDefinition } from '@temporalio/common';
import { OperationError } from './context';

export async function jobResult<T>(handle: WorkflowHandle): Promise<T> {
  try {
    return (await handle.result()) as T;
  } catch (err) {
    if (err instanceof WorkflowFailedError) {
      // "Activity task failed" says nothing: the operator reads what the activity said.
      let cause = err.cause;
      while ((cause instanceof ActivityFailure || cause instanceof ChildWorkflowFailure) && cause.cause)
        cause = cause.cause;
      throw new OperationError(`${handle.workflowId} failed: ${cause?.message ?? err.message}`, 'conflict');
    }
    throw err;
  }
}

/** Polls the job's status query until its state is one of `states`, or the job ends. */
export async function untilState<T extends { state: string }>(
  handle: WorkflowHandle,
  query: QueryDefinition<T>,
  states: readonly string[],
): Promise<T> {
  for (;;) {
    const status = await handle.query(query).catch(() => undefined);
    if (status && states.includes(status.state)) return status;
    if ((await handle.describe()).status.name !== 'RUNNING') return jobResult<T>(handle);
    await new Promise((r) => setTimeout(r, 250));
  }
}
