// The one way a long activity heartbeats: on a timer (a slow step must not look like a dead
// worker) and, for resumable work, with a cursor. The cursor of the previous attempt of the same
// activity (Temporal keeps the last heartbeat's details across retries) is handed to the work so
// it can resume there; `beat(cursor)` records new progress, sent at once and on every tick after.
import { Context } from '@temporalio/activity';

export interface Heartbeat<C> {
  /** What the previous attempt of this activity last heartbeated; undefined on a first attempt. */
  readonly previous: C | undefined;
  /** Records progress: heartbeated now (the SDK throttles) and again on every tick. */
  beat(cursor: C): void;
  /** The current cursor: the last one beaten, else `initial`. */
  readonly cursor: C | undefined;
}

export interface HeartbeatOptions<C> {
  /** Heartbeated on the ticks until the first beat(), e.g. where a retried attempt resumes. */
  initial?: (previous: C | undefined) => C;
  everyMs?: number;
}

/**
 * How often the timer heartbeats. Workers send heartbeats to Temporal at most this far apart too
 * (maxHeartbeatThrottleInterval in workers/run-worker.ts), so a heartbeat timeout a few times
 * this long tells a dead worker from a slow one within seconds.
 */
export const HEARTBEAT_EVERY_MS = 2000;

export async function withHeartbeat<T, C = never>(
  work: (hb: Heartbeat<C>) => Promise<T>,
  options: HeartbeatOptions<C> = {},
): Promise<T> {
  const ctx = Context.current();
  const previous = ctx.info.heartbeatDetails as C | undefined;
  let cursor: C | undefined = options.initial ? options.initial(previous) : undefined;
  const send = (): void => (cursor === undefined ? ctx.heartbeat() : ctx.heartbeat(cursor));
  const timer = setInterval(send, options.everyMs ?? HEARTBEAT_EVERY_MS);
  const hb: Heartbeat<C> = {
    previous,
    beat(next) {
      cursor = next;
      send();
    },
    get cursor() {
      return cursor;
    },
  };
  try {
    return await work(hb);
  } finally {
    clearInterval(timer);
  }
}

/** An activity that only shows it is alive (no cursor): heartbeats on the timer while it runs. */
export function keepAlive<A extends unknown[], T>(
  activity: (...args: A) => Promise<T>,
): (...args: A) => Promise<T> {
  return (...args) => withHeartbeat(() => activity(...args));
}

/** Every activity of a set, each wrapped in keepAlive (for workflows that give them the short
 * liveness timeout, workflows/lib/liveness.ts). */
export function keepAllAlive<T extends Record<string, (...args: never[]) => Promise<unknown>>>(
  activities: T,
): T {
  return Object.fromEntries(
    Object.entries(activities).map(([name, fn]) => [
      name,
      keepAlive(fn as (...args: unknown[]) => Promise<unknown>),
    ]),
  ) as unknown as T;
}
