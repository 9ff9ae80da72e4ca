// discoverHost: one discoverHost activity on the host's own task queue. A short workflow, not an
// activity started from the client: the Temporal client (SDK 1.24) cannot run an activity on its
// own, and the workflow bounds the wait so that "no process server of this host runs" is an
// answer with its fix instead of a hang.
import { ActivityFailure, ApplicationFailure, TimeoutFailure, proxyActivities } from '@temporalio/workflow';
import type { ProcessServerActivities } from '../activities/process-server';
import { FAILURE } from '../shared/failures';
import { hostProcessServerQueue } from '../shared/task-queues';
import type {
  DiscoverHostInput,
  DiscoverHostResult,
  DiscoverHostWorkflow,
} from '../shared/contracts/discover-host';

export const discoverHost: DiscoverHostWorkflow = async function discoverHost(
  input: DiscoverHostInput,
): Promise<DiscoverHostResult> {
  const seconds = input.timeoutSeconds ?? 30;
  const queue = hostProcessServerQueue(input.host.name);
  const ps = proxyActivities<Pick<ProcessServerActivities, 'discoverHost'>>({
    taskQueue: queue,
    scheduleToCloseTimeout: `${seconds}s`,
    retry: { maximumAttempts: 1 },
  });
  try {
    const { machines } = await ps.discoverHost({ host: input.host, registered: input.registered });
    return { ok: true, machines };
  } catch (err) {
    const cause = err instanceof ActivityFailure ? err.cause : err;
    if (cause instanceof ApplicationFailure && cause.type === FAILURE.HostRefused) {
      const details = cause.details?.[0] as { problem?: string } | undefined;
      return { ok: false, problem: details?.problem ?? 'failed', message: cause.message };
    }
    if (cause instanceof TimeoutFailure)
      return {
        ok: false,
        problem: 'no-server',
        message: `no process server of host ${input.host.name} answered within ${seconds} s (task queue ${queue}): start one where the host is reachable (\`node dist/workers/process-server.js --host ${input.host.name}\`) and check it with \`osr servers\``,
      };
    return { ok: false, problem: 'failed', message: cause instanceof Error ? cause.message : String(cause) };
  }
};
