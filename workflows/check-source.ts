// checkSource: one probe of a machine's QMP socket by a process server of its site, before
// `osr protect` starts or records anything. The control plane runs it (client.workflow.execute)
// instead of opening the socket itself: it may run on another host than QEMU.
import { ActivityFailure, ApplicationFailure, TimeoutFailure, proxyActivities } from '@temporalio/workflow';
import type { ProcessServerActivities } from '../activities/process-server';
import { FAILURE } from '../shared/failures';
import { processServerQueueOf } from './lib/host-queue';
import type {
  CheckSourceInput,
  CheckSourceResult,
  CheckSourceWorkflow,
} from '../shared/contracts/check-source';

export const checkSource: CheckSourceWorkflow = async function checkSource(
  input: CheckSourceInput,
): Promise<CheckSourceResult> {
  const seconds = input.timeoutSeconds ?? 20;
  const queue = processServerQueueOf(input);
  const { probeSource } = proxyActivities<Pick<ProcessServerActivities, 'probeSource'>>({
    taskQueue: queue,
    scheduleToCloseTimeout: `${seconds}s`,
    retry: { maximumAttempts: 1 },
  });
  try {
    const { site: _site, host: _host, timeoutSeconds: _timeout, ...probe } = input;
    const { greeted, disks, sameSocket, azureReadiness, domainXml } = await probeSource(probe);
    return { ok: true, greeted, disks, sameSocket, azureReadiness, ...(domainXml ? { domainXml } : {}) };
  } catch (err) {
    const cause = err instanceof ActivityFailure ? err.cause : err;
    if (cause instanceof ApplicationFailure && cause.type === FAILURE.SourceRefused)
      return { ok: false, problem: 'refused', message: cause.message };
    if (cause instanceof TimeoutFailure)
      return {
        ok: false,
        problem: 'unavailable',
        message: input.host
          ? `no process server of host ${input.host} answered within ${seconds} s (task queue ${queue}): start one on the host (\`node dist/workers/process-server.js --host ${input.host}\`) and check it with \`osr servers\``
          : `no process server of site ${input.site} answered within ${seconds} s (task queue ${queue}): start one on the machine's QEMU host (\`node dist/workers/process-server.js\` with site ${input.site}, or \`osr stack up\` on a single host) and check it with \`osr doctor\``,
      };
    return { ok: false, problem: 'failed', message: cause instanceof Error ? cause.message : String(cause) };
  }
};
