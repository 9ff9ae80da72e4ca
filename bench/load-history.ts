// Temporal history figures of the load run (bench/load.ts): events of all of a machine's runs
// (counted at the start and the end of the window, so growth per hour is measured, not projected),
// and the mix of one run's events, from which Temporal "actions" per cycle follow (what a cluster
// is sized, and Temporal Cloud billed, by: workflow starts, activities, timers, signals, upserts).
import type { Client } from '@temporalio/client';
import { protectWorkflowId } from '../shared/contracts/protect-machine';

export interface HistoryTotals {
  runs: number;
  /** Events of all runs of the machine's workflow since protection. */
  events: number;
  longestRun: number;
}

export async function historyTotals(client: Client, machine: string): Promise<HistoryTotals> {
  const totals: HistoryTotals = { runs: 0, events: 0, longestRun: 0 };
  for await (const run of client.workflow.list({ query: `WorkflowId = '${protectWorkflowId(machine)}'` })) {
    const length =
      run.historyLength ||
      (await client.workflow.getHandle(run.workflowId, run.runId).describe()).historyLength;
    totals.runs++;
    totals.events += length;
    totals.longestRun = Math.max(totals.longestRun, length);
  }
  return totals;
}

export interface EventMix {
  /** freezePoint activities scheduled in the run: one per cycle. */
  cycles: number;
  events: number;
  /** Events that are Temporal actions (workflow task events and completions are not). */
  actions: number;
  activities: number;
  timers: number;
  upserts: number;
  signals: number;
}

/** The mix of events of the machine's current run. */
export async function eventMix(client: Client, machine: string): Promise<EventMix> {
  const history = await client.workflow.getHandle(protectWorkflowId(machine)).fetchHistory();
  const mix: EventMix = {
    cycles: 0,
    events: 0,
    actions: 0,
    activities: 0,
    timers: 0,
    upserts: 0,
    signals: 0,
  };
  for (const e of history.events ?? []) {
    mix.events++;
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) {
      mix.activities++;
      if (scheduled.activityType?.name === 'freezePoint') mix.cycles++;
    }
    if (e.timerStartedEventAttributes) mix.timers++;
    if (e.upsertWorkflowSearchAttributesEventAttributes) mix.upserts++;
    if (e.workflowExecutionSignaledEventAttributes) mix.signals++;
    if (
      e.workflowExecutionStartedEventAttributes ||
      e.markerRecordedEventAttributes ||
      e.startChildWorkflowExecutionInitiatedEventAttributes
    )
      mix.actions++;
  }
  mix.actions += mix.activities + mix.timers + mix.upserts + mix.signals;
  return mix;
}
