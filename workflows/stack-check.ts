// stackCheck: one storage round trip from a worker of every role, each on its own task queue.
// Proves the embedded (or configured) stack is wired end to end; `osr doctor` and the
// quickstart run it.
import { proxyActivities, ActivityFailure } from '@temporalio/workflow';
import type { ControlActivities } from '../activities/control';
import type { ProbeResult } from '../activities/common/stack-probe';
import {
  CLOUD_APPLIER_TASK_QUEUE,
  CONTROL_TASK_QUEUE,
  masterTargetQueue,
  processServerQueue,
} from '../shared/task-queues';

export interface StackCheckInput {
  site: string;
  /** How long to wait for a worker of each role to pick the probe up. */
  scheduleToStartSeconds?: number;
}

export interface StackCheckResult {
  ok: boolean;
  probes: Array<{ queue: string; result?: ProbeResult; error?: string }>;
}

function probeOn(queue: string, waitSeconds: number) {
  return proxyActivities<Pick<ControlActivities, 'probeStorage'>>({
    taskQueue: queue,
    scheduleToStartTimeout: `${waitSeconds}s`,
    startToCloseTimeout: '30s',
    retry: { maximumAttempts: 3, nonRetryableErrorTypes: [] },
  }).probeStorage;
}

export async function stackCheck(input: StackCheckInput): Promise<StackCheckResult> {
  const wait = input.scheduleToStartSeconds ?? 30;
  const queues = [
    CONTROL_TASK_QUEUE,
    processServerQueue(input.site),
    CLOUD_APPLIER_TASK_QUEUE,
    masterTargetQueue(input.site),
  ];
  const probes = await Promise.all(
    queues.map(async (queue) => {
      try {
        return { queue, result: await probeOn(queue, wait)() };
      } catch (err) {
        const cause = err instanceof ActivityFailure ? err.cause : err;
        const message = cause instanceof Error ? cause.message : String(cause);
        return {
          queue,
          error:
            message.includes('SCHEDULE_TO_START') || message.toLowerCase().includes('timeout')
              ? `no worker polled ${queue} within ${wait}s: is it running?`
              : message,
        };
      }
    }),
  );
  return { ok: probes.every((p) => p.result !== undefined), probes };
}
