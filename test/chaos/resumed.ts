// When the steady machine's replication resumed after a kill, seen from the vault, not from the
// product's log: the moment a point cut after the victim's restart first shows in the catalog.
// Every kill trial is also measured by it, whatever its own job: a process server killed during
// another machine's initial sync stops steady's cycles too.
import { JOB_TIMEOUT_MS, sleep } from './trials';

export interface ResumeWatch {
  /** When the first point cut after `since` was seen (ms); undefined if stopped or timed out before. */
  readonly seenAt: Promise<number | undefined>;
  stop(): void;
}

export function watchResume(
  points: () => Promise<Array<{ id: string; instant: string; sourceInstant?: string }>>,
  instantOf: (p: { id: string; instant: string; sourceInstant?: string }) => number,
  since: number,
  timeoutMs = JOB_TIMEOUT_MS,
): ResumeWatch {
  let stopped = false;
  const seenAt = (async () => {
    while (!stopped && Date.now() < since + timeoutMs) {
      const found = await points().then(
        (ps) => ps.some((p) => instantOf(p) > since),
        () => false,
      );
      if (found) return Date.now();
      await sleep(250);
    }
    return undefined;
  })();
  return {
    seenAt,
    stop: () => {
      stopped = true;
    },
  };
}
