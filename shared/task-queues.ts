// Task queues: one per role, process servers and master targets per site, so that more workers
// of a role scale out by polling the same queue.
export const CONTROL_TASK_QUEUE = 'osr-control';
export const CLOUD_APPLIER_TASK_QUEUE = 'osr-cloud-applier';

export function processServerQueue(site: string): string {
  return `osr-process-server-${site}`;
}

/** The process servers started for one host (`--host <name>`): they alone see its machines. */
export function hostProcessServerQueue(host: string): string {
  return `osr-process-server-host-${host}`;
}

/** Where a machine's process-server work goes: its host's queue, or its site's (no host). */
export function machineProcessServerQueue(machine: { site: string; host?: string }): string {
  return machine.host ? hostProcessServerQueue(machine.host) : processServerQueue(machine.site);
}

/**
 * The queue of the one process server whose agent listener has this address (host:port): work
 * that needs an agent's connection (its replication, its upgrade) goes where the agent is.
 */
export function agentListenerQueue(listenerAddress: string): string {
  return `osr-process-server-agents-${listenerAddress}`;
}

/**
 * The master target inside the process server whose agent listener polls `listenerQueue`: failback
 * into an agent machine writes its disks through that server's connection to the agent.
 */
export function agentMasterTargetQueue(listenerQueue: string): string {
  return `${listenerQueue}-master-target`;
}

export function masterTargetQueue(site: string): string {
  return `osr-master-target-${site}`;
}

/** Whether a process server also polls the recovery site's queue (reprotect reads from there). */
export function servesRecoverySite(config: {
  site: string;
  recoverySite: string;
  serveRecoverySite: 'auto' | 'yes' | 'no';
  temporal: { address?: string };
}): boolean {
  if (config.recoverySite === config.site || config.serveRecoverySite === 'no') return false;
  return config.serveRecoverySite === 'yes' || config.temporal.address === undefined;
}
