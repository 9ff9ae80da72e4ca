// The history budget of an entity workflow: after so many cycles (or cuts), when the server
// suggests it, or past so many events, the workflow hands its state to a fresh run (continueAsNew).
import { workflowInfo } from '@temporalio/workflow';

/** Cycles per run before continueAsNew, unless the server suggests it earlier. */
export const CYCLES_PER_RUN = 100;
/** Events per run before continueAsNew, whatever the cycle count (timers while paused add up). */
export const MAX_HISTORY_EVENTS = 5000;

/** Whether this run should continue as new: `done` of `max` cycles, a server hint, or many events. */
export function historyIsLong(done: number, max: number): boolean {
  return (
    done >= max || workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > MAX_HISTORY_EVENTS
  );
}
