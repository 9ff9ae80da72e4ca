// HTTP errors of the API: every refusal becomes a status and a JSON message the client can act
// on; anything unexpected becomes a 500 without internals (the details go to the server's log).
import { ConfigError } from '../lib/config/config';
import { OperationError } from '../operations/context';
import { PolicyError } from '../shared/policy';
import { storageCredentialProblem } from '../lib/azure/blob-client';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const STATUS_OF: Record<OperationError['code'], number> = {
  'not-found': 404,
  conflict: 409,
  invalid: 400,
  unavailable: 503,
};

/** Whether an error means a part (Temporal, storage) cannot be reached, not that the request is wrong. */
function isUnavailable(err: Error): boolean {
  const grpcCode = (err as { code?: unknown }).code;
  return (
    err.message.startsWith('Cannot reach Temporal') ||
    (err.name === 'ServiceError' && grpcCode === 14) ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(String(grpcCode))
  );
}

/** The ApiError for any thrown value; `expected` says whether the message may go to the client. */
export function toApiError(err: unknown): { error: ApiError; expected: boolean } {
  if (err instanceof ApiError) return { error: err, expected: true };
  if (err instanceof OperationError)
    return { error: new ApiError(STATUS_OF[err.code], err.message, err.code), expected: true };
  if (err instanceof PolicyError || err instanceof ConfigError)
    return { error: new ApiError(400, err.message, 'invalid'), expected: true };
  const storage = storageCredentialProblem(err);
  // The server's own configuration is wrong: not the client's fault, and the operator must act.
  if (storage) return { error: new ApiError(503, storage, 'unavailable'), expected: false };
  if (err instanceof Error && isUnavailable(err))
    return {
      error: new ApiError(
        503,
        'a part of OSR is unavailable (Temporal or storage); retry later',
        'unavailable',
      ),
      expected: false,
    };
  return {
    error: new ApiError(500, 'internal error; the server log has the details', 'internal'),
    expected: false,
  };
}
