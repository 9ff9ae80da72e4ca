// What a workflow is waiting on, for tests: each pending activity with its attempt and last failure
// (a step retried for minutes, a cycle that seems to hang with no alert, names its cause here, where
// the status and the logs show only that nothing happens), and a wait for a step to be under way.
import type { Client } from '@temporalio/client';
import { pollFor } from './poll';

const iso = (ts?: { seconds?: unknown } | null): string =>
  ts?.seconds === undefined || ts.seconds === null ? '?' : new Date(Number(ts.seconds) * 1000).toISOString();

/** One line per pending activity; never throws (a failure to describe is said instead). */
export async function pendingWork(client: Client, workflowId: string): Promise<string> {
  try {
    const described = await client.workflow.getHandle(workflowId).describe();
    const pending = described.raw.pendingActivities ?? [];
    if (pending.length === 0) return `${workflowId}: ${described.status.name}, no activity pending`;
    return pending
      .map((a) => {
        const failure = a.lastFailure ? `, last failure: ${a.lastFailure.message?.slice(0, 400)}` : '';
        return `${a.activityType?.name ?? '?'} (scheduled ${iso(a.scheduledTime)}) attempt ${a.attempt} of ${a.maximumAttempts || 'unlimited'}${failure}`;
      })
      .join('; ');
  } catch (err) {
    return `${workflowId} not described: ${(err as Error).message}`;
  }
}

/** Resolves once the workflow has `activity` pending (scheduled or running), polled every 100 ms. */
export async function whenPending(
  client: Client,
  workflowId: string,
  activity: string,
  timeoutMs = 60_000,
): Promise<void> {
  const handle = client.workflow.getHandle(workflowId);
  await pollFor(
    async () => {
      const pending = (await handle.describe()).raw.pendingActivities ?? [];
      return pending.some((a) => a.activityType?.name === activity) || undefined;
    },
    {
      timeoutMs,
      intervalMs: 100,
      failure: () => new Error(`${workflowId} ran no ${activity} within ${timeoutMs / 1000} s`),
    },
  );
}
