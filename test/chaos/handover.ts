// The handover victim: two process servers of the site poll the same queue; the one holding work
// is killed -9 and not restarted while the trial runs, so replication can only go on if the other
// takes the dead one's activities over by itself (Temporal hands an attempt whose heartbeats
// stopped to any poller of the queue). Recovery counts from the kill to the first point cut after
// it that the vault lists (resumed.ts), and the trial's own job done by the survivor alone.
import type { Chaos } from './chaos';
import { workerIdentity, type InFlight } from './landing';
import type { Victim } from './trials';

/** The handover trials' second process server (its worker name in the test stack). */
export const PARTNER = 'process-server-2';

/** The running workers a kill of `victim` may hit, by name and pid (none for the servers). */
export function servers(chaos: Chaos, victim: Victim): Array<{ name: string; pid: number }> {
  const names = victim === 'handover' ? ['process-server', PARTNER] : [victim];
  return names.flatMap((name) => {
    const pid = chaos.pids.get(name);
    return pid ? [{ name, pid }] : [];
  });
}

/** The worker to kill: for a handover, whichever of the two holds work `before` the kill. */
export function victimWorker(
  chaos: Chaos,
  victim: Victim,
  before: InFlight[],
): { name: string; pid: number } | undefined {
  const candidates = servers(chaos, victim);
  return candidates.find((c) => before.some((a) => a.worker === workerIdentity(c.pid))) ?? candidates[0];
}

/** Runs a handover trial with a second process server, launched like the first (one state
 * folder, key and namespace), then goes back to one: the killed one started again, the partner
 * stopped cleanly (it drains). */
export async function withPartner<T>(chaos: Chaos, trial: () => Promise<T>): Promise<T> {
  await chaos.startWorker('process-server', undefined, PARTNER);
  try {
    return await trial();
  } finally {
    if (!chaos.pids.has('process-server')) await chaos.startWorker('process-server');
    if (chaos.pids.has(PARTNER)) await chaos.stack.stopWorker(PARTNER);
    chaos.pids.delete(PARTNER);
  }
}
