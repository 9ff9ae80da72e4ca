// Stops a source machine's writes before a planned failover, so that the final recovery point is
// the last state of its disks. A VM (qemu-system) is paused with QMP `stop`: the guest issues no
// more I/O. A qemu-storage-daemon has no guest to pause (it has no `stop` command): its writers
// are outside QEMU, so the machine's quiesce `pre` command is run and left in effect (no thaw: the
// source is being retired). Without such a command the operator must have stopped the writers;
// the result says so and the failover's status shows it.
import type { ProtectedMachine } from '../../shared/replication-types';
import type { StopWritesResult } from '../../lib/sources/source-connector';
import { withSource } from './source';

export type { StopWritesResult };

export function stopSourceWrites(machine: ProtectedMachine): Promise<StopWritesResult> {
  return withSource(machine, (source) => source.stopWrites());
}
