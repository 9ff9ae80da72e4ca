// Stops a source machine's writes before a planned failover, so that the final recovery point is
// the last state of its disks. A VM (qemu-system) is paused with QMP `stop`: the guest issues no
// more I/O. A qemu-storage-daemon has no guest to pause (it has no `stop` command): its writers
// are outside QEMU, so the machine's quiesce `pre` command is run and left in effect (no thaw: the
// source is being retired). Without such a command the operator must have stopped the writers;
// the result says so and the failover's status shows it. A machine protected through the Mobility
// agent has its tracked disks suspended by the agent until the failover ends, or, when it fails
// or is cancelled, until resumeSourceWrites gives them back.
import { ApplicationFailure } from '@temporalio/common';
import type { ProtectedMachine } from '../../shared/replication-types';
import { AgentTooOldError } from '../../lib/sources/agent-source';
import type { StopWritesResult } from '../../lib/sources/source-connector';
import { withSource } from './source';

export type { StopWritesResult };

export async function stopSourceWrites(machine: ProtectedMachine): Promise<StopWritesResult> {
  try {
    return await withSource(machine, (source) => source.stopWrites());
  } catch (err) {
    // The same answer on every attempt: the operator upgrades the agent.
    if (err instanceof AgentTooOldError)
      throw ApplicationFailure.create({ type: err.name, message: err.message, nonRetryable: true });
    throw err;
  }
}

/** Gives a stopped machine its writes back; says what it did (a source that cannot: says so). */
export function resumeSourceWrites(machine: ProtectedMachine): Promise<string> {
  return withSource(machine, async (source) =>
    source.resumeWrites
      ? source.resumeWrites()
      : `${machine.name}'s source cannot resume its writes by itself`,
  );
}
