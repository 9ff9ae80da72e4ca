// Heartbeating on a timer, for activity steps that report no progress of their own (copies,
// downloads, waits on another workflow): a slow step must not look like a dead worker.
import { Context } from '@temporalio/activity';

export async function withHeartbeat<T>(work: () => Promise<T>, everyMs = 5000): Promise<T> {
  const ctx = Context.current();
  const timer = setInterval(() => ctx.heartbeat(), everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
