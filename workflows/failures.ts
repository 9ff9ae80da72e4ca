// Reading failures in workflow code: what an operator should read, and the application type.
import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';

/** The message worth showing: an activity's own failure rather than Temporal's wrapper. */
export function messageOf(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** The ApplicationFailure type of an error or of an activity's failure. */
export function failureType(err: unknown): string | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined;
}
