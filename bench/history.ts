// Where a cycle's time goes, read from the protect workflow's history: each activity's span from
// scheduled to closed, by the Temporal server's clock. The benchmark reports these next to its
// own wall-clock figures, so a missed target names the slow step.
import type { Client, WorkflowHandle } from '@temporalio/client';
import { protectWorkflowId } from '../shared/contracts/protect-machine';

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;
type HistoryEvent = NonNullable<History['events']>[number];

export interface ActivitySpan {
  type: string;
  scheduledMs: number;
  startedMs?: number;
  closedMs?: number;
  outcome?: 'completed' | 'failed' | 'timed-out' | 'canceled';
}

function timeMs(event: HistoryEvent): number {
  const t = event.eventTime;
  if (!t) return 0;
  return Number(String(t.seconds ?? 0)) * 1000 + (t.nanos ?? 0) / 1e6;
}

const idOf = (v: unknown): string => String(v ?? '');

/** Every activity of the machine's current workflow run, in scheduling order. */
export async function activitySpans(client: Client, machine: string): Promise<ActivitySpan[]> {
  const history = await client.workflow.getHandle(protectWorkflowId(machine)).fetchHistory();
  const byScheduled = new Map<string, ActivitySpan>();
  for (const e of history.events ?? []) {
    const at = timeMs(e);
    if (e.activityTaskScheduledEventAttributes) {
      byScheduled.set(idOf(e.eventId), {
        type: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?',
        scheduledMs: at,
      });
      continue;
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const span = byScheduled.get(idOf(started.scheduledEventId));
      if (span) span.startedMs = at;
      continue;
    }
    const closed: Array<[{ scheduledEventId?: unknown } | null | undefined, ActivitySpan['outcome']]> = [
      [e.activityTaskCompletedEventAttributes, 'completed'],
      [e.activityTaskFailedEventAttributes, 'failed'],
      [e.activityTaskTimedOutEventAttributes, 'timed-out'],
      [e.activityTaskCanceledEventAttributes, 'canceled'],
    ];
    for (const [attrs, outcome] of closed) {
      if (!attrs) continue;
      const span = byScheduled.get(idOf(attrs.scheduledEventId));
      if (span) Object.assign(span, { closedMs: at, outcome });
    }
  }
  return [...byScheduled.values()];
}

export interface PhaseSummary {
  /** Seconds from the first scheduling to the last close of each activity type (slices merged). */
  seconds: Record<string, number>;
  /** Activities that did not complete (retries), by type. */
  notCompleted: Record<string, number>;
}

/** Phases of the activities scheduled within [fromMs, toMs] (wall-clock ms, Date.now()). */
export function phases(spans: readonly ActivitySpan[], fromMs: number, toMs: number): PhaseSummary {
  // Activities still running (housekeeping after the point) belong to no finished phase.
  const window = spans.filter(
    (s) => s.scheduledMs >= fromMs && s.scheduledMs <= toMs && s.closedMs !== undefined,
  );
  const seconds: Record<string, number> = {};
  const notCompleted: Record<string, number> = {};
  const types = [...new Set(window.map((s) => s.type))];
  for (const type of types) {
    const of = window.filter((s) => s.type === type);
    const first = Math.min(...of.map((s) => s.scheduledMs));
    const last = Math.max(...of.map((s) => s.closedMs ?? s.scheduledMs));
    seconds[type] = (last - first) / 1000;
    const bad = of.filter((s) => s.outcome !== 'completed').length;
    if (bad) notCompleted[type] = bad;
  }
  return { seconds, notCompleted };
}

/** "freezePoint 0.1 s, transferDisk 3.2 s, …" in the order a cycle runs them. */
export function formatPhases(p: PhaseSummary): string {
  const order = [
    'freezePoint',
    'ensureReplicaDisk',
    'transferDisk',
    'applyCycle',
    'publishPoint',
    'releasePoint',
    'deleteCycleSegments',
    'pruneRetention',
  ];
  const known = Object.keys(p.seconds).sort((a, b) => {
    const ia = order.indexOf(a);
    const ib = order.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
  });
  const text = known.map((t) => `${t} ${(p.seconds[t] ?? 0).toFixed(2)} s`).join(', ');
  const retries = Object.entries(p.notCompleted).map(([t, n]) => `${n}× ${t}`);
  return retries.length ? `${text} (not completed: ${retries.join(', ')})` : text;
}

/** Slices of transferDisk in the window and the seconds between one closing and the next starting. */
export function sliceGaps(
  spans: readonly ActivitySpan[],
  fromMs: number,
  toMs: number,
): { slices: number; gapSeconds: number } {
  const slices = spans
    .filter(
      (s) =>
        s.type === 'transferDisk' &&
        s.scheduledMs >= fromMs &&
        s.scheduledMs <= toMs &&
        s.closedMs !== undefined,
    )
    .sort((a, b) => a.scheduledMs - b.scheduledMs);
  let gap = 0;
  for (let i = 1; i < slices.length; i++) {
    const prev = slices[i - 1] as ActivitySpan;
    const next = slices[i] as ActivitySpan;
    gap += Math.max(0, (next.startedMs ?? next.scheduledMs) - (prev.closedMs ?? prev.scheduledMs));
  }
  return { slices: slices.length, gapSeconds: gap / 1000 };
}
