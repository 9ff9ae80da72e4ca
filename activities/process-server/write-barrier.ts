// The write barrier of a consistency-group cut: every member's writes are held, each member's
// disks are frozen, then all are released. Held means no write is acknowledged to the workload
// meanwhile, so a write acknowledged after the cut on any member can be in no member's image.
// How a machine holds its writes is its source connector's business (for QEMU:
// lib/qemu/qemu-source.ts):
// - a VM (qemu-system): QMP `stop` pauses its vCPUs (QEMU drains in-flight I/O), `cont` resumes;
//   a VM that was already paused is left as it was;
// - a qemu-storage-daemon, whose writers live outside QEMU: the guest agent's fsfreeze, or the
//   machine's quiesce pre command (which must return only once writes are held) and post command;
// - a machine with the Mobility agent: the agent suspends its tracked disks (lib/sources/agent-source.ts),
//   and lets them go by itself after a limit: the release then says so and the cut is no group point.
// A machine with none of these cannot join a group: there is nothing to hold its writes with.
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type { BarrierMethod, HeldMachine } from '../../shared/group-types';
import type { ProtectedMachine } from '../../shared/replication-types';
import {
  NoWriteBarrierError,
  SourceUnreachableError,
  WritesNotHeldError,
} from '../../lib/sources/source-connector';
import { withSource } from './source';

export const NO_WRITE_BARRIER = FAILURE.NoWriteBarrier;

export interface HoldResult {
  held: HeldMachine[];
  /** Wall clock (ms) when the first hold began and when the last one was in place. */
  startedAt: number;
  heldAt: number;
}

/** How the machine's writes can be held, or a non-retryable failure that says what it lacks. */
export async function barrierMethod(machine: ProtectedMachine): Promise<BarrierMethod> {
  return withSource(machine, (source) => source.writeBarrier().catch(noBarrier));
}

function noBarrier(err: unknown): never {
  if (!(err instanceof NoWriteBarrierError)) throw err;
  throw ApplicationFailure.create({
    type: NO_WRITE_BARRIER,
    nonRetryable: true,
    message: err.message,
  });
}

/**
 * Holds the writes of every machine; on any failure releases those already held and throws, naming
 * the member. A member that does not answer fails the cut at once (not retried): a retry would hold
 * the others' writes again waiting for it; the next cut tries again.
 */
export async function holdWrites(machines: ProtectedMachine[]): Promise<HoldResult> {
  const startedAt = Date.now();
  const outcomes = await Promise.allSettled(
    machines.map((m) =>
      withSource(m, async (source) => ({
        machine: m.name,
        method: await source.holdWrites().catch(noBarrier),
      })).catch((err: unknown) => Promise.reject(naming(m.name, err))),
    ),
  );
  const held = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed) {
    await releaseWrites(machines, held);
    throw failed.reason;
  }
  return { held, startedAt, heldAt: Date.now() };
}

function naming(machine: string, err: unknown): unknown {
  if (err instanceof ApplicationFailure)
    return ApplicationFailure.create({
      type: err.type ?? undefined,
      nonRetryable: err.nonRetryable ?? undefined,
      message: `${machine}: ${err.message}`,
    });
  if (!(err instanceof Error)) return err;
  return ApplicationFailure.create({
    type: err instanceof SourceUnreachableError ? FAILURE.SourceUnreachable : err.name,
    nonRetryable: err instanceof SourceUnreachableError,
    message: `${machine}: ${err.message}`,
  });
}

/**
 * Releases what holdWrites held; safe to repeat (a retried release resumes a resumed VM: no-op).
 * `notHeld` names members whose writes the source let go before this release (the cut is then no
 * consistent cut).
 */
export async function releaseWrites(
  machines: ProtectedMachine[],
  held: HeldMachine[],
): Promise<{ releasedAt: number; notHeld: string[] }> {
  const errors: string[] = [];
  const notHeld: string[] = [];
  await Promise.all(
    held.map(async (h) => {
      const machine = machines.find((m) => m.name === h.machine);
      if (!machine) return;
      await withSource(machine, (source) => source.releaseWrites(h.method)).catch((err: Error) =>
        (err instanceof WritesNotHeldError ? notHeld : errors).push(`${h.machine}: ${err.message}`),
      );
    }),
  );
  // Every release was tried before failing: one stuck member must not keep the others held.
  if (errors.length) throw new Error(`could not release writes of ${errors.join('; ')}`);
  return { releasedAt: Date.now(), notHeld };
}
