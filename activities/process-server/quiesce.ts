// Quiescing the application around an app-consistent point is the source connector's (for QEMU:
// lib/qemu/quiesce.ts); here a failure to quiesce becomes the failure the workflow acts on.
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type { QuiesceHooks } from '../../shared/replication-types';
import { quiesceAround } from '../../lib/qemu/quiesce';
import { QuiesceError } from '../../lib/sources/source-connector';

function quiesceFailed(message: string): ApplicationFailure {
  // Retrying a failing quiesce only delays the point: the workflow cuts a crash-consistent one.
  return ApplicationFailure.create({ type: FAILURE.QuiesceFailed, nonRetryable: true, message });
}

/** Runs `freeze` quiesced (lib/qemu/quiesce.ts); a failure to quiesce is a QuiesceFailed failure. */
export function withQuiesce<T>(
  hooks: QuiesceHooks | undefined,
  machine: string,
  freeze: () => Promise<T>,
): Promise<T> {
  return quiesceAround(hooks, machine, freeze).catch(asQuiesceFailed);
}

/** The failure to throw for `err`: QuiesceFailed when quiescing failed, else `err` itself. */
export function asQuiesceFailed(err: unknown): never {
  throw err instanceof QuiesceError ? quiesceFailed(err.message) : err;
}
