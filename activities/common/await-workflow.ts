// Waiting in an activity for another workflow to reach a state. The workflows waited on keep
// running past that state (a failover child until it is committed, protectMachine for ever), so
// there is no result to await: the state is read with the workflow's status query, again and again.
// The wait heartbeats, and sleeps with the activity context's sleep, so a cancelled activity stops
// waiting at once.
import { Context } from '@temporalio/activity';
import { withHeartbeat } from './with-heartbeat';

/**
 * Calls `check` until it returns a value (returned) or throws (thrown), `everyMs` apart. The
 * workflow is reached through the worker's client: `Context.current().client`.
 */
export function awaitWorkflowState<T>(check: () => Promise<T | undefined>, everyMs = 500): Promise<T> {
  return withHeartbeat(async () => {
    const ctx = Context.current();
    for (;;) {
      const done = await check();
      if (done !== undefined) return done;
      await ctx.sleep(everyMs);
    }
  });
}
