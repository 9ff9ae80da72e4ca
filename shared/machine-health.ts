// A protected machine's health, computed in one place: the protectMachine workflow fills its status
// query (and the OsrHealth search attribute) with it, and the control plane recomputes it on the
// wall clock after adding what only it knows (the group's failed cuts). The CLI, the API, the
// dashboard and /metrics show this field; none of them judges health on its own.
// The rules are written down in docs/operations.md ("Machine health").
import { rpoSecondsAt } from './rpo';

export type HealthLevel = 'healthy' | 'warning' | 'critical';

export interface MachineHealth {
  level: HealthLevel;
  /** Why it is not healthy, worst first; empty when healthy. */
  reasons: string[];
}

/** An alert as health reads it (a machine's or its group's). */
interface HealthAlert {
  kind: string;
  severity: 'warning' | 'critical';
  message: string;
  count?: number;
}

/**
 * What health is judged from: a machine status (shared/contracts/protect-machine.ts), or the parts
 * of one. Written out here rather than imported, so shared/ does not import its contracts and the
 * contracts can import this file.
 */
export interface HealthInput {
  state: string;
  policy: { rpoThresholdSeconds: number };
  lastPoint?: { id?: string; instant: string; kind?: string };
  alerts: HealthAlert[];
  failing?: { since: string; failures: number; reason: string; sourceUnreachable: boolean };
  /** When protection started (the machine's registration): how long it has been without a point. */
  protectedSince?: string;
}

/** The number OsrHealth-style consumers sort by (the osr_machine_health gauge): 0, 1, 2. */
export const HEALTH_RANK: Record<HealthLevel, number> = { healthy: 0, warning: 1, critical: 2 };

/** Past this many thresholds without a point, a late point is no longer a warning but critical. */
export const CRITICAL_RPO_FACTOR = 2;

export function machineHealth(input: HealthInput, nowMs: number): MachineHealth {
  const critical: string[] = [];
  const warning: string[] = [];
  const threshold = input.policy.rpoThresholdSeconds;
  const failing = input.failing;

  // The source does not answer: nothing new can be protected until it does.
  const unreachable = input.alerts.find((a) => a.kind === 'source-unreachable');
  if (failing?.sourceUnreachable || unreachable) {
    critical.push(
      failing?.sourceUnreachable
        ? `source unreachable since ${failing.since} (${failing.failures} failed cycle(s)): ${failing.reason}`
        : `source unreachable: ${unreachable?.message ?? ''}`,
    );
  }

  // RPO: from the newest point's instant, or, before the first point, from when protection began.
  const active = input.state !== 'disabling' && input.state !== 'disabled';
  if (input.lastPoint) {
    const rpo = rpoSecondsAt(input.lastPoint.instant, nowMs) as number;
    if (rpo > CRITICAL_RPO_FACTOR * threshold)
      critical.push(
        `no recovery point for ${rpo} s: more than ${CRITICAL_RPO_FACTOR}× the RPO threshold of ${threshold} s`,
      );
    else if (rpo > threshold) warning.push(`RPO ${rpo} s is past the threshold of ${threshold} s`);
  } else if (active && input.protectedSince) {
    const age = Math.max(0, Math.round((nowMs - Date.parse(input.protectedSince)) / 1000));
    if (age > CRITICAL_RPO_FACTOR * threshold)
      critical.push(
        `no recovery point at all ${age} s after protection started: the first sync should have finished within ${CRITICAL_RPO_FACTOR}× the RPO threshold of ${threshold} s`,
      );
    else if (age > threshold)
      warning.push(
        `no recovery point yet ${age} s after protection started (the RPO threshold is ${threshold} s)`,
      );
  }

  if (failing && !failing.sourceUnreachable)
    warning.push(`${failing.failures} cycle(s) failed in a row since ${failing.since}: ${failing.reason}`);
  if (input.state === 'paused') warning.push('paused: no recovery point is cut until it is resumed');

  // Alerts by severity, except those the rules above already judged from fresher data.
  for (const a of input.alerts) {
    if (covered(a, input)) continue;
    const seen = a.count && a.count > 1 ? ` (${a.count} times)` : '';
    (a.severity === 'critical' ? critical : warning).push(`${a.kind}: ${a.message}${seen}`);
  }

  if (critical.length) return { level: 'critical', reasons: [...critical, ...warning] };
  if (warning.length) return { level: 'warning', reasons: warning };
  return { level: 'healthy', reasons: [] };
}

/** Alerts a structural rule describes already (from the RPO of now, the failing record). */
function covered(a: HealthAlert, input: HealthInput): boolean {
  if (a.kind === 'rpo-exceeded') return true; // the RPO rule, on the caller's clock
  if (a.kind === 'source-unreachable') return true; // the source rule
  if (a.kind === 'replication-resumed') return true; // informational: the trouble is over
  if (a.kind === 'cycle-failed') return input.failing !== undefined;
  return false;
}
