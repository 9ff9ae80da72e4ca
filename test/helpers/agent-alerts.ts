// A machine's alerts as `osr alerts` lists them, waited for by what they say (the agent-resilience
// test): replication-resumed after trouble, and the agent point-store alerts (agent-store-low,
// agent-store-full) of a filling store.
import type { OsrAlert } from '../../operations/alerts';
import { pollFor } from './poll';

/** The free bytes an agent-store-low alert states ("(<n> bytes at …"). */
export const freeIn = (a: OsrAlert): number => Number(/\((\d+) bytes at /.exec(a.message)?.[1]);

export class StoreAlertWatch {
  constructor(private readonly alerts: () => Promise<OsrAlert[]>) {}

  async current(): Promise<OsrAlert[]> {
    return (await this.alerts()).filter((a) => a.kind.startsWith('agent-store-'));
  }

  /** The first alert of `kind` that `accept`s, within `timeoutMs` (else every store alert seen). */
  async waitFor(
    kind: 'agent-store-low' | 'agent-store-full',
    what: string,
    accept: (a: OsrAlert) => boolean = () => true,
    timeoutMs = 60_000,
  ): Promise<OsrAlert> {
    return pollFor(async () => (await this.current()).find((a) => a.kind === kind && accept(a)), {
      timeoutMs,
      intervalMs: 1000,
      failure: () => new Error(`no ${kind} alert ${what} within ${timeoutMs / 1000} s`),
    }).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(await this.current())}`);
    });
  }

  /** Until no store alert is left. */
  async waitCleared(what: string, timeoutMs = 60_000): Promise<void> {
    await pollFor(async () => ((await this.current()).length === 0 ? true : undefined), {
      timeoutMs,
      intervalMs: 1000,
      failure: () => new Error(`the agent-store alerts did not clear within ${timeoutMs / 1000} s ${what}`),
    }).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(await this.current())}`);
    });
  }
}

/**
 * The replication-resumed alert once it says `what` and the trouble's alerts are gone (the point is
 * in the catalog a moment before the workflow clears them).
 */
export function waitResumed(
  alerts: () => Promise<OsrAlert[]>,
  what: RegExp,
  since: string,
): Promise<OsrAlert> {
  return pollFor(
    async () => {
      const all = await alerts();
      if (all.some((a) => a.kind === 'source-unreachable' || a.kind === 'resync-needed')) return undefined;
      return all.find(
        (a) => a.kind === 'replication-resumed' && what.test(a.message) && (a.lastAt ?? a.at) > since,
      );
    },
    {
      timeoutMs: 120_000,
      intervalMs: 1000,
      failure: () => new Error(`no replication-resumed alert matching ${what} within 120 s`),
    },
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(await alerts())}`);
  });
}
