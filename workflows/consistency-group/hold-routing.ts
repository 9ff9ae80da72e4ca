// Where a cut holds each member's writes. A Mobility agent answers only on the process server that
// holds its connection (its own queue, as for its cycles in protect-machine/agent-routing.ts); on a
// site with two process servers that may not be the one taking the group's queue, and the hold then
// failed as unreachable. So each member is checked when the group starts, and held and released
// at each cut, through its own queue, the queues in parallel. A group with no agent member keeps
// its one hold on the group's queue, and runs recorded before this replay as they ran (patched
// 'group-hold-routing', written only for groups with agents).
import { CancellationScope, patched } from '@temporalio/workflow';
import type { HeldMachine } from '../../shared/group-types';
import type { ProtectedMachine } from '../../shared/replication-types';
import { barrierActivities, type GroupRun } from './run';

export const PATCH_GROUP_HOLD_ROUTING = 'group-hold-routing';

type Barrier = Pick<GroupRun, 'ps' | 'release'>;

/** Members held through one process-server queue. */
export interface QueueHold {
  barrier: Barrier;
  machines: ProtectedMachine[];
  held: HeldMachine[];
}

export interface MembersHeld {
  holds: QueueHold[];
  held: HeldMachine[];
  /** Wall clock (ms) when the first hold began and when the last one was in place. */
  startedAt: number;
  heldAt: number;
}

/** Holds every member's writes; on any failure releases what was held and throws the first. */
export async function holdMembers(run: GroupRun, machines: ProtectedMachine[]): Promise<MembersHeld> {
  const placed = await placeMembers(run, machines);
  const outcomes = await Promise.allSettled(
    placed.map(async ({ barrier, machines }) => ({
      barrier,
      machines,
      ...(await barrier.ps.holdWrites({ machines })),
    })),
  );
  const done = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed) {
    await CancellationScope.nonCancellable(() => releaseMembers(done));
    throw failed.reason;
  }
  return {
    holds: done,
    held: done.flatMap((d) => d.held),
    startedAt: Math.min(...done.map((d) => d.startedAt)),
    heldAt: Math.max(...done.map((d) => d.heldAt)),
  };
}

/** Releases every queue's held members; `notHeld` names those whose writes were let go early. */
export async function releaseMembers(
  holds: QueueHold[],
): Promise<{ releasedAt: number; notHeld?: string[] }> {
  const released = await Promise.all(
    holds.map(({ barrier, machines, held }) => barrier.release.releaseWrites({ machines, held })),
  );
  if (released.length === 1) return released[0] as { releasedAt: number; notHeld?: string[] };
  return {
    releasedAt: Math.max(0, ...released.map((r) => r.releasedAt)),
    notHeld: released.flatMap((r) => r.notHeld ?? []),
  };
}

/** The barrier activities that reach `machine` (the group's start checks each member there). */
export async function barrierFor(run: GroupRun, machine: ProtectedMachine): Promise<Barrier> {
  if (machine.source.type !== 'agent' || !patched(PATCH_GROUP_HOLD_ROUTING)) return run;
  return barrierOn(run, await queueOf(run, machine));
}

/** The members grouped by the queue that can hold them: the agents' own, else the group's. */
async function placeMembers(
  run: GroupRun,
  machines: ProtectedMachine[],
): Promise<Array<{ barrier: Barrier; machines: ProtectedMachine[] }>> {
  const agents = machines.filter((m) => m.source.type === 'agent');
  if (!agents.length || !patched(PATCH_GROUP_HOLD_ROUTING)) return [{ barrier: run, machines }];
  const queues = await Promise.all(machines.map((m) => queueOf(run, m)));
  const byQueue = new Map<string, ProtectedMachine[]>();
  machines.forEach((m, i) => {
    const q = queues[i] as string;
    byQueue.set(q, [...(byQueue.get(q) ?? []), m]);
  });
  return [...byQueue].map(([queue, members]) => ({ barrier: barrierOn(run, queue), machines: members }));
}

/** An agent member's holder's queue (the group's when it is not connected: it fails there). */
async function queueOf(run: GroupRun, m: ProtectedMachine): Promise<string> {
  if (m.source.type !== 'agent') return run.queue;
  return (await run.control.agentQueue({ agentId: m.source.agentId })) ?? run.queue;
}

const barrierOn = (run: GroupRun, queue: string): Barrier =>
  queue === run.queue ? run : barrierActivities(queue);
