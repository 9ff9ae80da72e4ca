// Replay harness: every workflow change must replay the histories recorded before it
// (test/histories/*.json, replayed by test/unit/replay.test.ts), and every integration test
// replays the history it just made against the current code.
// (protobufjs 8 is a direct dependency so that npm dedupes the SDK packages' copies: with
// several copies, the SDK's history JSON conversion fails with "type must be a Type".)
import fs from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { workflowCodeOptions } from '../../workers/workflow-bundle';

let code: ReturnType<typeof workflowCodeOptions>['options'] | undefined;
/** The workflow code the control worker loads: the built bundle, or the sources when it is out of date. */
export const workflowCode = () => (code ??= workflowCodeOptions().options);
export const historiesDir = path.join(__dirname, '..', '..', '..', 'test', 'histories');

/** Replays the workflow's history on the current code; with OSR_RECORD_HISTORIES=1 also saves it. */
export async function assertReplays(handle: WorkflowHandle, recordAs?: string): Promise<void> {
  const history = await handle.fetchHistory();
  await Worker.runReplayHistory(workflowCode(), history, handle.workflowId);
  if (process.env.OSR_RECORD_HISTORIES && recordAs) {
    fs.mkdirSync(historiesDir, { recursive: true });
    fs.writeFileSync(path.join(historiesDir, `${recordAs}.json`), historyToJSON(history));
  }
}
