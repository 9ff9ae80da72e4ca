// Stops a source machine's writes before a planned failover, so that the final recovery point is
// the last state of its disks. A VM (qemu-system) is paused with QMP `stop`: the guest issues no
// more I/O. A qemu-storage-daemon has no guest to pause (it has no `stop` command): its writers
// are outside QEMU, so the machine's quiesce `pre` command is run and left in effect (no thaw: the
// source is being retired). Without such a command the operator must have stopped the writers;
// the result says so and the failover's status shows it.
import type { ProtectedMachine } from '../../shared/replication-types';
import { pauseIfRunning } from '../../lib/qemu/run-state';
import { runHook } from '../../lib/process/hook';

export interface StopWritesResult {
  method: 'qmp-stop' | 'quiesce-hook' | 'none';
  note: string;
}

export async function stopSourceWrites(machine: ProtectedMachine): Promise<StopWritesResult> {
  const state = await pauseIfRunning(machine.source.qmpSocket);
  if (state !== 'not-a-vm') {
    return {
      method: 'qmp-stop',
      note: `VM ${machine.name} ${state === 'running' ? 'paused with QMP stop' : 'was already paused'}`,
    };
  }
  const pre = machine.quiesce?.pre;
  if (pre) {
    const timeout = (machine.quiesce?.timeoutSeconds ?? 60) * 1000;
    const env = { ...process.env, OSR_MACHINE: machine.name, OSR_POINT_KIND: 'final' };
    await runHook(pre, env, timeout, `quiesce command of ${machine.name}`);
    return { method: 'quiesce-hook', note: `quiesce command of ${machine.name} run (no thaw)` };
  }
  return {
    method: 'none',
    note:
      `${machine.name} is served by a qemu-storage-daemon, which has no guest to stop, and has no quiesce command: ` +
      'its writers must have been stopped by the operator before the planned failover, or their later writes are not in the final point',
  };
}
