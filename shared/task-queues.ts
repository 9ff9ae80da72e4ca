// Task queues: one per role, process servers and master targets per site, so that more workers
// of a role scale out by polling the same queue.
export const CONTROL_TASK_QUEUE = 'osr-control';
export const CLOUD_APPLIER_TASK_QUEUE = 'osr-cloud-applier';

export function processServerQueue(site: string): string {
  return `osr-process-server-${site}`;
}

export function masterTargetQueue(site: string): string {
  return `osr-master-target-${site}`;
}
