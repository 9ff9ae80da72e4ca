// The write barrier of a consistency-group cut: every member's writes are held, each member's
// disks are frozen, then all are released. Held means no write is acknowledged to the workload
// meanwhile, so a write acknowledged after the cut on any member can be in no member's image.
// - a VM (qemu-system): QMP `stop` pauses its vCPUs (QEMU drains in-flight I/O), `cont` resumes;
//   a VM that was already paused is left as it was;
// - a qemu-storage-daemon, whose writers live outside QEMU: the guest agent's fsfreeze, or the
//   machine's quiesce pre command (which must return only once writes are held) and post command.
// A machine with none of these cannot join a group: there is nothing to hold its writes with.
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type { BarrierMethod, HeldMachine } from '../../shared/group-types';
import type { ProtectedMachine } from '../../shared/replication-types';
import { GuestAgentClient } from '../../lib/qemu/guest-agent-client';
import { pauseIfRunning, runState, withQmp } from '../../lib/qemu/run-state';
import { runHook } from './quiesce';

export const NO_WRITE_BARRIER = FAILURE.NoWriteBarrier;

export interface HoldResult {
  held: HeldMachine[];
  /** Wall clock (ms) when the first hold began and when the last one was in place. */
  startedAt: number;
  heldAt: number;
}

/** How the machine's writes can be held, or a non-retryable failure that says what it lacks. */
export async function barrierMethod(machine: ProtectedMachine): Promise<BarrierMethod> {
  const running = await withQmp(machine.source.qmpSocket, runState);
  if (running !== 'not-a-vm') return running === 'running' ? 'qmp-stop' : 'already-paused';
  return storageDaemonMethod(machine);
}

/** A storage daemon's writers are outside QEMU: only the guest agent or hook commands hold them. */
function storageDaemonMethod(machine: ProtectedMachine): BarrierMethod {
  if (machine.quiesce?.guestAgentSocket) return 'guest-agent';
  if (machine.quiesce?.pre && machine.quiesce.post) return 'quiesce-hook';
  throw ApplicationFailure.create({
    type: NO_WRITE_BARRIER,
    nonRetryable: true,
    message:
      `machine ${machine.name} is served by a qemu-storage-daemon and has no guest agent or pre/post quiesce commands, ` +
      'so its writes cannot be held for a consistent group cut; protect it again with --guest-agent or with both --pre and --post, or leave it out of the group',
  });
}

/** Holds the writes of every machine; on any failure releases those already held and throws. */
export async function holdWrites(machines: ProtectedMachine[]): Promise<HoldResult> {
  const startedAt = Date.now();
  const outcomes = await Promise.allSettled(machines.map((m) => holdOne(m)));
  const held = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed) {
    await releaseWrites(machines, held);
    throw failed.reason;
  }
  return { held, startedAt, heldAt: Date.now() };
}

/** Releases what holdWrites held; safe to repeat (a retried release resumes a resumed VM: no-op). */
export async function releaseWrites(
  machines: ProtectedMachine[],
  held: HeldMachine[],
): Promise<{ releasedAt: number }> {
  const errors: string[] = [];
  await Promise.all(
    held.map(async (h) => {
      const machine = machines.find((m) => m.name === h.machine);
      if (!machine) return;
      await releaseOne(machine, h.method).catch((err: Error) => errors.push(`${h.machine}: ${err.message}`));
    }),
  );
  // Every release was tried before failing: one stuck member must not keep the others held.
  if (errors.length) throw new Error(`could not release writes of ${errors.join('; ')}`);
  return { releasedAt: Date.now() };
}

async function holdOne(machine: ProtectedMachine): Promise<HeldMachine> {
  // A VM is asked and paused in one QMP connection: the barrier's length is what it costs.
  const vmState = await pauseIfRunning(machine.source.qmpSocket);
  if (vmState !== 'not-a-vm')
    return { machine: machine.name, method: vmState === 'running' ? 'qmp-stop' : 'already-paused' };
  const method = storageDaemonMethod(machine);
  const timeout = (machine.quiesce?.timeoutSeconds ?? 60) * 1000;
  if (method === 'guest-agent') {
    const agent = await GuestAgentClient.connect(machine.quiesce?.guestAgentSocket as string, timeout);
    try {
      await agent.freeze();
    } finally {
      agent.close();
    }
  }
  if (method === 'quiesce-hook') {
    await runHook(
      machine.quiesce?.pre as string,
      hookEnv(machine),
      timeout,
      `pre (hold) command of ${machine.name}`,
    );
  }
  return { machine: machine.name, method };
}

async function releaseOne(machine: ProtectedMachine, method: BarrierMethod): Promise<void> {
  const timeout = (machine.quiesce?.timeoutSeconds ?? 60) * 1000;
  if (method === 'qmp-stop') await withQmp(machine.source.qmpSocket, (qmp) => qmp.execute('cont'));
  if (method === 'guest-agent') {
    const agent = await GuestAgentClient.connect(machine.quiesce?.guestAgentSocket as string, timeout);
    try {
      await agent.thaw();
    } finally {
      agent.close();
    }
  }
  if (method === 'quiesce-hook') {
    await runHook(
      machine.quiesce?.post as string,
      hookEnv(machine),
      timeout,
      `post (release) command of ${machine.name}`,
    );
  }
}

function hookEnv(machine: ProtectedMachine): NodeJS.ProcessEnv {
  return { ...process.env, OSR_MACHINE: machine.name, OSR_POINT_KIND: 'group' };
}
