// The activities a workflow scheduled, read from its history: which type, on which task queue,
// with which input, when. What a test checks of routing and of what a cycle sent.
import type { Client } from '@temporalio/client';

export interface ScheduledActivity {
  name: string;
  queue: string;
  /** The first argument, decoded from its JSON payload. */
  input: unknown;
  at: Date;
}

export async function scheduledActivities(client: Client, workflowId: string): Promise<ScheduledActivity[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const out: ScheduledActivity[] = [];
  for (const e of history.events ?? []) {
    const a = e.activityTaskScheduledEventAttributes;
    if (!a) continue;
    const data = a.input?.payloads?.[0]?.data;
    const seconds = Number(e.eventTime?.seconds ?? 0);
    out.push({
      name: a.activityType?.name ?? '?',
      queue: a.taskQueue?.name ?? '?',
      input: data ? (JSON.parse(Buffer.from(data).toString('utf8')) as unknown) : undefined,
      at: new Date(seconds * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6)),
    });
  }
  return out;
}
