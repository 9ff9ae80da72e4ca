// Where an agent machine's process-server work goes: the queue of the process server whose
// listener holds the agent's connection, as its vault record says (written at each hello), or
// undefined when it is not connected (the work then goes to the site's queue and fails there as
// unreachable, backing off until the agent is back).
import { agentDoc, type AgentRecord } from '../../lib/agents/registry';
import { agentListenerQueue } from '../../shared/task-queues';
import type { WorkerDeps } from '../deps';

/** A record not refreshed for this long belongs to a dead listener (as `osr agent list` shows it). */
const STALE_MS = 150_000;

export async function agentQueue(
  deps: Pick<WorkerDeps, 'vault'>,
  input: { agentId: string },
): Promise<string | undefined> {
  const record = (await deps.vault.read<AgentRecord>(agentDoc(input.agentId)))?.value;
  const fresh = record?.lastSeenAt !== undefined && Date.now() - Date.parse(record.lastSeenAt) < STALE_MS;
  return record?.connected && fresh && record.listener ? agentListenerQueue(record.listener) : undefined;
}
