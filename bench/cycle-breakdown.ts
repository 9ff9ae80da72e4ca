// Where a replication cycle's wall time goes, read from the protect workflow's history by the
// Temporal server's clock (independent of OSR's own log): for each cycle, from one freeze's
// scheduling to the next one's, the time each activity waited in its queue and ran, the time
// nothing ran while the workflow waited on a timer (the next point's time), and the rest: workflow
// tasks between activities (Temporal round trips). Runs joined by continueAsNew are followed back.
import type { Client } from '@temporalio/client';
import { protectWorkflowId } from '../shared/contracts/protect-machine';
import { percentile } from './rpo';

type History = Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>;
type HistoryEvent = NonNullable<History['events']>[number];

interface Span {
  type: string;
  /** The activity input's `cycle` (freezePoint, publishPoint), if it has one. */
  cycle?: number;
  from: number;
  started?: number;
  to?: number;
}

export interface CycleBreakdown {
  cycles: number;
  /** Freeze scheduled to the next freeze scheduled: the interval between points' instants. */
  periodMean: number;
  periodP99: number;
  /** Freeze scheduled to publishPoint closed: how old a point is when it is published. */
  lagMean: number;
  lagP99: number;
  /** Per cycle, seconds: activities by type (queue = scheduled→started, run = started→closed). */
  activities: Array<{ type: string; count: number; queue: number; run: number }>;
  /** Per cycle, seconds with no activity outstanding: waiting on a timer, and the rest. */
  timerWait: number;
  workflowGaps: number;
}

const timeMs = (e: HistoryEvent): number => {
  const t = e.eventTime;
  return t ? Number(String(t.seconds ?? 0)) * 1000 + (t.nanos ?? 0) / 1e6 : 0;
};

/** The histories of the machine's workflow runs that overlap [fromMs, …), oldest first. */
async function historiesSince(client: Client, machine: string, fromMs: number): Promise<HistoryEvent[][]> {
  const id = protectWorkflowId(machine);
  const runs: HistoryEvent[][] = [];
  let runId: string | undefined;
  for (let i = 0; i < 50; i++) {
    const history = await client.workflow.getHandle(id, runId).fetchHistory();
    const events = history.events ?? [];
    runs.unshift(events);
    const started = events[0];
    const previous = started?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId;
    if (!previous || !started || timeMs(started) < fromMs) break;
    runId = previous;
  }
  return runs;
}

/** The `cycle` field of an activity's first argument (JSON payload), if any. */
function cycleOf(
  input: { payloads?: Array<{ data?: Uint8Array | null } | null> | null } | null | undefined,
): number | undefined {
  const data = input?.payloads?.[0]?.data;
  if (!data) return undefined;
  try {
    const arg = JSON.parse(Buffer.from(data).toString('utf8')) as { cycle?: unknown };
    return typeof arg.cycle === 'number' ? arg.cycle : undefined;
  } catch {
    return undefined;
  }
}

function spansOf(events: HistoryEvent[]): { activities: Span[]; timers: Span[] } {
  const activities = new Map<string, Span>();
  const timers = new Map<string, Span>();
  for (const e of events) {
    const at = timeMs(e);
    const id = String(e.eventId ?? '');
    const a = e.activityTaskScheduledEventAttributes;
    if (a) activities.set(id, { type: a.activityType?.name ?? '?', cycle: cycleOf(a.input), from: at });
    const st = e.activityTaskStartedEventAttributes;
    if (st) {
      const span = activities.get(String(st.scheduledEventId ?? ''));
      if (span) span.started = at;
    }
    for (const done of [
      e.activityTaskCompletedEventAttributes,
      e.activityTaskFailedEventAttributes,
      e.activityTaskTimedOutEventAttributes,
      e.activityTaskCanceledEventAttributes,
    ]) {
      const span = done && activities.get(String(done.scheduledEventId ?? ''));
      if (span) span.to = at;
    }
    if (e.timerStartedEventAttributes)
      timers.set(e.timerStartedEventAttributes.timerId ?? id, { type: 'timer', from: at });
    const ended = e.timerFiredEventAttributes ?? e.timerCanceledEventAttributes;
    if (ended) {
      const span = timers.get(ended.timerId ?? '');
      if (span) span.to = at;
    }
  }
  return { activities: [...activities.values()], timers: [...timers.values()] };
}

/** Milliseconds of [from, to) covered by the union of `spans`. */
function covered(spans: readonly Span[], from: number, to: number): number {
  const parts = spans
    .map((s) => [Math.max(from, s.from), Math.min(to, s.to ?? to)] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let end = from;
  for (const [a, b] of parts) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return total;
}

/** The breakdown of the cycles whose freeze was scheduled within [fromMs, toMs]. */
export async function cycleBreakdown(
  client: Client,
  machine: string,
  fromMs: number,
  toMs: number,
): Promise<CycleBreakdown> {
  const all = (await historiesSince(client, machine, fromMs)).map(spansOf);
  const activities = all.flatMap((r) => r.activities);
  const timers = all.flatMap((r) => r.timers);
  const freezes = activities.filter((s) => s.type === 'freezePoint').sort((a, b) => a.from - b.from);
  const periods: number[] = [];
  const lags: number[] = [];
  const byType = new Map<string, { count: number; queue: number; run: number }>();
  let timerWait = 0;
  let gaps = 0;
  for (let i = 0; i + 1 < freezes.length; i++) {
    const from = (freezes[i] as Span).from;
    const to = (freezes[i + 1] as Span).from;
    if (from < fromMs || from > toMs) continue;
    periods.push(to - from);
    // A pipelined cycle's publication comes after the next freeze: matched by cycle number.
    const cycle = (freezes[i] as Span).cycle;
    const publish = activities.find(
      (s) => s.type === 'publishPoint' && s.cycle === cycle && s.to !== undefined,
    );
    if (publish?.to !== undefined) lags.push(publish.to - from);
    const mine = activities.filter((s) => s.from >= from && s.from < to);
    for (const s of mine) {
      const t = byType.get(s.type) ?? { count: 0, queue: 0, run: 0 };
      t.count += 1;
      t.queue += (s.started ?? s.from) - s.from;
      t.run += (s.to ?? s.started ?? s.from) - (s.started ?? s.from);
      byType.set(s.type, t);
    }
    // Idle: no activity of any cycle outstanding (a pipelined cycle's apply counts as busy).
    const busy = covered(activities, from, to);
    const idleWithTimer = covered([...activities, ...timers], from, to) - busy;
    const idle = to - from - busy;
    timerWait += Math.max(0, Math.min(idle, idleWithTimer));
    gaps += Math.max(0, idle - Math.max(0, idleWithTimer));
  }
  const n = Math.max(1, periods.length);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length / 1000 : Number.NaN);
  return {
    cycles: periods.length,
    periodMean: mean(periods),
    periodP99: percentile(periods, 0.99) / 1000,
    lagMean: mean(lags),
    lagP99: percentile(lags, 0.99) / 1000,
    activities: [...byType.entries()].map(([type, t]) => ({
      type,
      count: t.count / n,
      queue: t.queue / n / 1000,
      run: t.run / n / 1000,
    })),
    timerWait: timerWait / n / 1000,
    workflowGaps: gaps / n / 1000,
  };
}

/** One line: "period 2.1 s (p99 2.4) · lag 1.2 s (p99 1.6) · freezePoint 0.01+0.03 s · …". */
export function formatBreakdown(b: CycleBreakdown): string {
  const acts = b.activities
    .map(
      (a) =>
        `${a.type}${a.count > 1.05 ? ` ×${a.count.toFixed(1)}` : ''} ${a.queue.toFixed(2)}+${a.run.toFixed(2)} s`,
    )
    .join(', ');
  return (
    `${b.cycles} cycles; period ${b.periodMean.toFixed(2)} s (p99 ${b.periodP99.toFixed(2)}), ` +
    `freeze→published ${b.lagMean.toFixed(2)} s (p99 ${b.lagP99.toFixed(2)}); per cycle, queue+run: ${acts}; ` +
    `idle on a timer ${b.timerWait.toFixed(2)} s, between activities (workflow tasks) ${b.workflowGaps.toFixed(2)} s`
  );
}
