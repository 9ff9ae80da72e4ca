// Where the time of a recovery plan job went, from its status (groups, machines, actions with
// their times) and each machine's child job status (its steps: create disks, record, materialize,
// boot check). Times are the workflows' own clocks (ISO strings), in seconds from the request.
import type { Client } from '@temporalio/client';
import { recoveryStatusQuery, type RecoveryStatus } from '../shared/contracts/recovery-job';
import type { PlanStatus } from '../shared/contracts/recovery-plan';

export interface Spread {
  min: number;
  median: number;
  max: number;
  n: number;
}

export function spread(xs: readonly number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return { min: NaN, median: NaN, max: NaN, n: 0 };
  const m = Math.floor(s.length / 2);
  const median = s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
  return { min: s[0] as number, median, max: s[s.length - 1] as number, n: s.length };
}

/** "min / median / max s (n=…)"; `unit` '' and `digits` 0 for counts. */
export const formatSpread = (s: Spread, unit = ' s', digits = 2): string =>
  s.n === 0
    ? '—'
    : `${s.min.toFixed(digits)} / ${s.median.toFixed(digits)} / ${s.max.toFixed(digits)}${unit}${s.n > 1 ? ` (n=${s.n})` : ''}`;

const span = (from?: string, to?: string): number | undefined =>
  from && to ? (Date.parse(to) - Date.parse(from)) / 1000 : undefined;

export interface MachineTiming {
  machine: string;
  group: string;
  /** In the plan: started → done. */
  seconds: number;
  /** Seconds by step name (create disks, record, materialize, boot check…), skipped steps left out. */
  steps: Record<string, number>;
  /** Plan's start of the machine → the child's first step (child start, scheduling). */
  startLag?: number;
  /** The child's last step → the plan's end of the machine (failover: the 500 ms watch poll). */
  endLag?: number;
  bootOk?: boolean;
  bootDetail?: string;
  /** Probe runs of the boot check (the probe is retried every 500 ms until it succeeds). */
  probeAttempts?: number;
}

export interface PlanTiming {
  /** Workflow clock: plan start → last group end. */
  workflowSeconds: number;
  groups: Array<{ name: string; seconds: number; machines: Spread; actions: number }>;
  actions: Array<{ id: string; group: string; seconds: number }>;
  machines: MachineTiming[];
}

/** The child job statuses of a plan job, by workflow id (a closed child answers queries too). */
export async function childStatuses(client: Client, plan: PlanStatus): Promise<Map<string, RecoveryStatus>> {
  const out = new Map<string, RecoveryStatus>();
  await Promise.all(
    plan.groups
      .flatMap((g) => g.machines)
      .map(async (m) => {
        const status = await client.workflow
          .getHandle(m.workflowId)
          .query(recoveryStatusQuery)
          .catch(() => undefined);
        if (status) out.set(m.workflowId, status);
      }),
  );
  return out;
}

export function planTiming(plan: PlanStatus, children: Map<string, RecoveryStatus>): PlanTiming {
  const ends = plan.groups.map((g) => g.endedAt).filter((x): x is string => !!x);
  const lastEnd = ends.sort().at(-1);
  const machines: MachineTiming[] = [];
  const groups: PlanTiming['groups'] = [];
  const actions: PlanTiming['actions'] = [];
  for (const g of plan.groups) {
    const secs: number[] = [];
    for (const m of g.machines) {
      const child = children.get(m.workflowId);
      const steps: Record<string, number> = {};
      const done = (child?.steps ?? []).filter((s) => s.state !== 'skipped');
      for (const s of done) steps[s.name] = (steps[s.name] ?? 0) + (span(s.startedAt, s.endedAt) ?? 0);
      const seconds = span(m.startedAt, m.endedAt) ?? NaN;
      secs.push(seconds);
      machines.push({
        machine: m.machine,
        group: g.name,
        seconds,
        steps,
        startLag: span(m.startedAt, done[0]?.startedAt),
        endLag: span(done.at(-1)?.endedAt, m.endedAt),
        bootOk: child?.bootCheck?.ok,
        bootDetail: child?.bootCheck?.reason,
        probeAttempts: child?.bootCheck?.probeAttempts,
      });
    }
    for (const a of g.actions)
      actions.push({ id: a.id, group: g.name, seconds: span(a.startedAt, a.endedAt) ?? NaN });
    groups.push({
      name: g.name,
      seconds: span(g.startedAt, g.endedAt) ?? NaN,
      machines: spread(secs),
      actions: g.actions.length,
    });
  }
  return { workflowSeconds: span(plan.startedAt, lastEnd) ?? NaN, groups, actions, machines };
}

/** Every step name seen, in the order the steps run. */
export function stepNames(timing: PlanTiming): string[] {
  const names: string[] = [];
  for (const m of timing.machines)
    for (const n of Object.keys(m.steps)) if (!names.includes(n)) names.push(n);
  return names;
}
