// The refusal every operation of the control plane throws. Pure (no I/O), so that name checks
// used by workflow-safe modules (shared/names.ts) can throw it too.

/** An operation refused for a reason the operator can fix; `code` maps to CLI exit codes and HTTP statuses. */
export class OperationError extends Error {
  constructor(
    message: string,
    readonly code: 'not-found' | 'conflict' | 'invalid' | 'unavailable',
  ) {
    super(message);
  }
}
