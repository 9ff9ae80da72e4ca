// What the blob endpoint did to this process's requests: throttled answers (503 Server Busy, 500),
// time-outs and connection errors, counted per try (the Azure SDK retries them with exponential
// backoff; see createBlobServiceClient). Counters are kept for the whole process and, through an
// AsyncLocalStorage scope, for one activity (`withStorageWatch`), so an activity can report to its
// workflow what its own requests went through, and the workflow can raise an alert that names the
// storage problem even when every retry finally succeeded.
//
// The per-try time-out lives here too: the SDK's `tryTimeoutInMs` only sets the server-side
// `timeout` query parameter, and Node's HTTP client waits for ever by default, so an endpoint that
// accepts the connection and never answers would hang an activity until its heartbeat times out.
// `storageTryPolicy` aborts a try after `tryTimeoutMs` and fails it with code ETIMEDOUT, which the
// SDK's retry policy retries like any network error.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import { RestError } from '@azure/storage-blob';
import type { StorageTrouble } from '../../shared/storage-faults';

export const noTrouble = (): StorageTrouble => ({ throttled: 0, timeouts: 0, unreachable: 0 });

export function hasTrouble(t: StorageTrouble | undefined): t is StorageTrouble {
  return t !== undefined && t.throttled + t.timeouts + t.unreachable > 0;
}

/** Since this process started. */
export const processTrouble: StorageTrouble = noTrouble();
const scope = new AsyncLocalStorage<StorageTrouble>();

function note(kind: 'throttled' | 'timeouts' | 'unreachable', what: string): void {
  for (const t of [processTrouble, scope.getStore()]) {
    if (!t) continue;
    t[kind] += 1;
    t.last = what;
  }
}

/** Runs `fn` with its own trouble counters; they are returned beside its result (and on failure, attached). */
export async function withStorageWatch<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; trouble: StorageTrouble }> {
  const trouble = noTrouble();
  try {
    const result = await scope.run(trouble, fn);
    return { result, trouble };
  } catch (err) {
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { storageTrouble: trouble });
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'REQUEST_SEND_ERROR',
]);

/**
 * Classifies an error thrown by a blob call after the SDK gave up retrying: a storage endpoint
 * problem (throttling, time-out, unreachable) or undefined for anything else (a 404, a 412, a bug).
 */
export function storageProblem(
  err: unknown,
): { problem: 'throttled' | 'unreachable'; message: string } | undefined {
  if (!(err instanceof Error)) return undefined;
  const status = (err as { statusCode?: number }).statusCode;
  const code = String((err as { code?: string }).code ?? '');
  if (status === 503 || status === 500) {
    return {
      problem: 'throttled',
      message: `the storage endpoint answered ${status}${code ? ` (${code})` : ''} to every try`,
    };
  }
  if (code === 'ETIMEDOUT' || NETWORK_CODES.has(code)) {
    return {
      problem: 'unreachable',
      message:
        code === 'ETIMEDOUT'
          ? `the storage endpoint did not answer in time (${err.message})`
          : `the storage endpoint cannot be reached (${code}: ${err.message})`,
    };
  }
  return undefined;
}

/**
 * Per-try policy, placed after the SDK's retry policy: counts throttled answers and network
 * failures of each try, and aborts a try that gets no answer within `tryTimeoutMs`.
 */
export function storageTryPolicy(tryTimeoutMs: number): PipelinePolicy {
  return {
    name: 'osrStorageTry',
    async sendRequest(request, next) {
      const outer = request.abortSignal;
      const controller = new AbortController();
      const forward = () => controller.abort();
      if (outer?.aborted) controller.abort();
      outer?.addEventListener('abort', forward);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, tryTimeoutMs);
      request.abortSignal = controller.signal;
      const what = `${request.method} ${new URL(request.url).pathname}`;
      try {
        const response = await next(request);
        if (response.status === 503 || response.status === 500) {
          note(
            'throttled',
            `${response.status} ${response.headers.get('x-ms-error-code') ?? ''} on ${what}`.trim(),
          );
        }
        return response;
      } catch (err) {
        if (timedOut && !outer?.aborted) {
          note('timeouts', `no answer within ${tryTimeoutMs} ms on ${what}`);
          throw new RestError(`no answer from the storage endpoint within ${tryTimeoutMs} ms (${what})`, {
            code: 'ETIMEDOUT',
            request,
          });
        }
        const code = String((err as { code?: string }).code ?? '');
        if (NETWORK_CODES.has(code)) note('unreachable', `${code} on ${what}`);
        throw err;
      } finally {
        clearTimeout(timer);
        outer?.removeEventListener('abort', forward);
        request.abortSignal = outer;
      }
    },
  };
}
