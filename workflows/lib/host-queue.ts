// Which process-server queue a machine's work goes to: its host's (`osr protect --host`), served
// by the process servers started for that host, or its site's. A machine without a host keeps
// the site queue. Gated with patched(): a run that started before hosts existed replays as it ran
// (the marker is written only for machines with a host, the only ones whose queue changes).
import { patched } from '@temporalio/workflow';
import { hostProcessServerQueue, processServerQueue } from '../../shared/task-queues';

export const PATCH_HOST_QUEUE = 'host-queue';

export function processServerQueueOf(machine: { site: string; host?: string }): string {
  return machine.host && patched(PATCH_HOST_QUEUE)
    ? hostProcessServerQueue(machine.host)
    : processServerQueue(machine.site);
}
