// Where a kill lands, observed apart from the product's own logs: from Temporal, the activities
// in flight (started, not finished) and the worker that holds each; from Azurite's folder, when it
// last saved its metadata (what it acknowledged after that, a kill -9 forgets).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';

export interface InFlight {
  workflowId: string;
  activityId: string;
  activityType: string;
  attempt: number;
  worker: string;
}

/** The identity the Temporal SDK gives a worker process by default. */
export const workerIdentity = (pid: number) => `${pid}@${os.hostname()}`;

/** PENDING_ACTIVITY_STATE_STARTED in Temporal's API (a worker holds the activity). */
const STARTED = 2;

/** Activities started and not finished, across every running workflow, as Temporal records them. */
export async function activitiesInFlight(client: Client): Promise<InFlight[]> {
  const found: InFlight[] = [];
  for await (const wf of client.workflow.list({ query: 'ExecutionStatus="Running"' })) {
    const d = await client.workflow
      .getHandle(wf.workflowId, wf.runId)
      .describe()
      .catch(() => undefined);
    for (const a of d?.raw.pendingActivities ?? []) {
      if (Number(a.state) !== STARTED) continue;
      found.push({
        workflowId: wf.workflowId,
        activityId: a.activityId ?? '',
        activityType: a.activityType?.name ?? '',
        attempt: a.attempt ?? 0,
        worker: a.lastWorkerIdentity ?? '',
      });
    }
  }
  return found;
}

const key = (a: InFlight) => `${a.workflowId}/${a.activityId}#${a.attempt}@${a.worker}`;

/** What was in flight both just before and just after a kill: work the kill landed on. */
export function heldThrough(before: InFlight[], after: InFlight[]): InFlight[] {
  const later = new Set(after.map(key));
  return before.filter((a) => later.has(key(a)));
}

/**
 * When Azurite last saved all of its metadata (ms), or 0 before its first save. Blob records and
 * extent records (where page data lies) are two databases, each saved every 5 s on its own timer:
 * what is newer than the older save may be forgotten by a kill -9.
 */
export function azuriteLastSave(location: string): number {
  const saved = (db: string) => {
    try {
      return fs.statSync(path.join(location, db)).mtimeMs;
    } catch {
      return 0;
    }
  };
  return Math.min(saved('__azurite_db_blob__.json'), saved('__azurite_db_blob_extent__.json'));
}
