// The audit log of operator actions: who did what, when, to what, and how it ended. Every
// changing operation of the control plane (the functions the CLI and the API both call) is wrapped
// with `audited`, which appends one document per action to the vault when it ends:
// audit/<yyyy-mm-dd>/<ISO time>-<random>.json, created only if absent (never rewritten).
// Who: the API's caller (the identity its bearer token names; its address) or the OS user running the CLI, carried in
// an AsyncLocalStorage set by the entry point (`runAs`).
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { storageCredentialProblem } from '../lib/azure/blob-client';
import type { Vault } from '../lib/azure/vault';
import type { Role } from '../shared/roles';
import { OperationError, type ControlContext } from './context';

export interface Actor {
  /** Through what: the CLI, the HTTP API, or a process without an entry point (scripts, tests). */
  via: 'cli' | 'api' | 'process';
  /** The OS user (CLI, process) or the API identity the bearer token names (`legacy`: the old single token). */
  user: string;
  /** API: the identity's role. */
  role?: Role;
  host: string;
  /** API: the caller's address. */
  address?: string;
  /** API: the X-OSR-Operator header, as the caller claims it (not verified). */
  claimedOperator?: string;
}

export interface AuditEntry {
  id: string;
  at: string;
  endedAt: string;
  durationMs: number;
  actor: Actor;
  /** e.g. machine.protect, drill.start, failover.commit, plan.approve */
  action: string;
  /** The machine, plan, policy or job acted on. */
  target: string;
  details?: Record<string, unknown>;
  outcome: 'ok' | 'refused' | 'failed';
  /** Refused: the reason's code (not-found, conflict, invalid, unavailable). */
  code?: string;
  error?: string;
}

const actorStorage = new AsyncLocalStorage<Actor>();

function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}

export function cliActor(): Actor {
  return { via: 'cli', user: osUser(), host: os.hostname() };
}

/** Runs `fn` with `actor` as the one audit entries name. */
export function runAs<T>(actor: Actor, fn: () => T): T {
  return actorStorage.run(actor, fn);
}

export function currentActor(): Actor {
  return actorStorage.getStore() ?? { via: 'process', user: osUser(), host: os.hostname() };
}

export const auditPrefix = (day: string) => `audit/${day}/`;

/** Appends an entry (create-only: an entry is never replaced). */
export async function appendAudit(vault: Vault, entry: AuditEntry): Promise<void> {
  await vault.write(`${auditPrefix(entry.at.slice(0, 10))}${entry.id}.json`, entry);
}

/**
 * Wraps an operation so each call is recorded. `describe` names the target and the details worth
 * keeping (never secrets). The operation's result or error is passed through unchanged; an audit
 * entry that cannot be written is reported on stderr, not turned into a failure of an action that
 * already happened.
 */
export function audited<A extends [ControlContext, ...unknown[]], R>(
  action: string,
  operation: (...args: A) => Promise<R>,
  describe: (...args: NoInfer<A>) => { target: string; details?: Record<string, unknown> },
): (...args: A) => Promise<R> {
  return async (...args: A): Promise<R> => {
    const started = new Date();
    const actor = currentActor();
    let outcome: AuditEntry['outcome'] = 'ok';
    let code: string | undefined;
    let error: string | undefined;
    try {
      return await operation(...args);
    } catch (err) {
      // Waiting for a second person's approval (operations/approvals.ts) is not a failure.
      const waits = (err as Error).name === 'ApprovalPendingError';
      outcome = err instanceof OperationError || waits ? 'refused' : 'failed';
      code = err instanceof OperationError ? err.code : waits ? 'awaiting-approval' : undefined;
      error = (err as Error).message;
      throw err;
    } finally {
      const ended = new Date();
      let described: ReturnType<typeof describe>;
      try {
        described = describe(...args);
      } catch {
        described = { target: '?' };
      }
      const details = described.details ? stripUndefined(described.details) : undefined;
      const entry: AuditEntry = {
        id: `${started.toISOString().replace(/[:.]/g, '')}-${randomBytes(4).toString('hex')}`,
        at: started.toISOString(),
        endedAt: ended.toISOString(),
        durationMs: ended.getTime() - started.getTime(),
        actor,
        action,
        target: described.target,
        ...(details && Object.keys(details).length ? { details } : {}),
        outcome,
        ...(code ? { code } : {}),
        ...(error ? { error: error.slice(0, 2000) } : {}),
      };
      try {
        await appendAudit(args[0].vault, entry);
      } catch (err) {
        // Storage refusing the credentials is what the operation's own error says, with the fix.
        const reason = storageCredentialProblem(err)
          ? 'storage refused the credentials'
          : (err as Error).message;
        process.stderr.write(
          `osr: the audit entry for ${action} ${entry.target} could not be written: ${reason}\n`,
        );
      }
    }
  };
}

function stripUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

export interface AuditQuery {
  /** ISO time or date: entries at or after it (default: 30 days ago). */
  since?: string;
  /** ISO time or date: entries before it (default: now). */
  until?: string;
  /** Newest first, at most this many (default 100, at most 1000). */
  limit?: number;
  action?: string;
  target?: string;
  user?: string;
}

/** Entries newest first, read day by day backwards from `until`. */
export async function listAudit(ctx: ControlContext, query: AuditQuery = {}): Promise<AuditEntry[]> {
  const parse = (what: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    const t = Date.parse(text);
    if (Number.isNaN(t))
      throw new OperationError(
        `${what}: "${text}" is not an ISO date or time (2026-11-25T08:00:00Z)`,
        'invalid',
      );
    return t;
  };
  const until = parse('until', query.until, Date.now() + 1000);
  const since = parse('since', query.since, until - 30 * 86400_000);
  const limit = query.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new OperationError('limit: a whole number from 1 to 1000', 'invalid');
  const out: AuditEntry[] = [];
  const firstDay = new Date(since).toISOString().slice(0, 10);
  for (let day = new Date(until); ; day = new Date(day.getTime() - 86400_000)) {
    const key = day.toISOString().slice(0, 10);
    if (key < firstDay) break;
    const names = (await ctx.vault.listNames(auditPrefix(key))).reverse();
    // Names sort by time; read in small batches, newest first, until the limit is reached.
    for (let i = 0; i < names.length && out.length < limit; i += 20) {
      const docs = await Promise.all(names.slice(i, i + 20).map((n) => ctx.vault.read<AuditEntry>(n)));
      for (const d of docs) {
        const e = d?.value;
        if (!e) continue;
        const t = Date.parse(e.at);
        if (t < since || t >= until) continue;
        if (query.action && e.action !== query.action && !e.action.startsWith(`${query.action}.`)) continue;
        if (query.target && e.target !== query.target) continue;
        if (query.user && e.actor.user !== query.user) continue;
        if (out.length < limit) out.push(e);
      }
    }
    if (out.length >= limit) break;
  }
  return out;
}
