// The state of one consistencyGroup run: what is carried across continueAsNew (`s`), what lives
// only in this run (the cut in progress and its members' reports, point requests), the activities,
// and small helpers (phase, status, alerts, members' workflow handles).
import { getExternalWorkflowHandle, log, proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { ControlActivities } from '../../activities/control';
import type { ProcessServerActivities } from '../../activities/process-server';
import type {
  GroupAlert,
  GroupInput,
  GroupState,
  GroupStatus,
  MemberReport,
} from '../../shared/contracts/consistency-group';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import { FAILURE } from '../../shared/failures';
import type { GroupPoint } from '../../shared/group-types';
import { CONTROL_TASK_QUEUE } from '../../shared/task-queues';
import { processServerQueueOf } from '../lib/host-queue';
import { WORKER_HEARTBEAT_TIMEOUT } from '../lib/liveness';
import { pushCapped } from '../lib/alerts';
import { rpoSecondsSince } from '../lib/points';

export interface GroupRun {
  readonly input: GroupInput;
  readonly group: GroupInput['group'];
  /** Whether members' writes are held during a cut (tests turn it off to show the difference). */
  readonly barrier: boolean;
  /** Carried to the next run by continueAsNew. */
  readonly s: GroupState;
  /** The group's process-server queue (hold-routing.ts may hold agent members elsewhere). */
  readonly queue: string;
  readonly ps: ReturnType<typeof barrierActivities>['ps'];
  readonly release: ReturnType<typeof barrierActivities>['release'];
  readonly control: ReturnType<typeof activities>['control'];
  phase: GroupStatus['phase'];
  /** The members' answers about the cut in progress. */
  reports: Map<string, MemberReport>;
  currentCut: number;
  /** Set by handlers: the loop looks again at what to do. */
  wake: boolean;
  cutsThisRun: number;
  readonly requests: Array<{ done?: GroupPoint; failed?: string }>;
}

/** Holding and releasing members' writes through one process-server queue. */
export function barrierActivities(queue: string) {
  const ps = proxyActivities<ProcessServerActivities>({
    taskQueue: queue,
    startToCloseTimeout: '2m',
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: {
      initialInterval: '1s',
      maximumInterval: '10s',
      maximumAttempts: 5,
      nonRetryableErrorTypes: [FAILURE.NoWriteBarrier],
    },
  });
  // Releasing writes must happen: retried until it does.
  const release = proxyActivities<ProcessServerActivities>({
    taskQueue: queue,
    startToCloseTimeout: '2m',
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: { initialInterval: '500ms', maximumInterval: '10s' },
  });
  return { ps, release };
}

function activities(input: GroupInput) {
  const queue = processServerQueueOf(input.group);
  const control = proxyActivities<ControlActivities>({
    taskQueue: CONTROL_TASK_QUEUE,
    startToCloseTimeout: '1m',
  });
  return { queue, ...barrierActivities(queue), control };
}

export function startRun(input: GroupInput): GroupRun {
  const s: GroupState = input.carried ?? {
    state: 'starting',
    intervalSeconds: input.group.intervalSeconds,
    cut: 0,
    alerts: [],
    alertSeq: 0,
    stats: { cuts: 0, skipped: 0, failed: 0 },
  };
  return {
    input,
    group: input.group,
    barrier: input.barrier ?? true,
    s,
    ...activities(input),
    phase: undefined,
    reports: new Map(),
    currentCut: 0,
    wake: false,
    cutsThisRun: 0,
    requests: [],
  };
}

/** The cut's phase, also shown as the workflow's current details in the Temporal Web UI. */
export function setPhase(run: GroupRun, next: GroupStatus['phase']): void {
  const { s, group } = run;
  run.phase = next;
  const last = s.lastPoint
    ? `last point ${s.lastPoint.id}, writes held ${s.lastPoint.barrierMs} ms`
    : 'no point yet';
  setCurrentDetails(
    `${s.state} · ${group.machines.join(', ')} · ${next ? `cut ${s.cut}: ${next}` : 'idle'} · ${last}`,
  );
}

export const rpoSeconds = (run: GroupRun) => rpoSecondsSince(run.s.lastPoint?.instant);

export const status = (run: GroupRun): GroupStatus => ({
  ...run.s,
  group: run.group.name,
  machines: run.group.machines,
  phase: run.phase,
  rpoSeconds: rpoSeconds(run),
});

/** Raises an alert and fails the point requests waiting on this cut. */
export function alert(
  run: GroupRun,
  kind: GroupAlert['kind'],
  severity: GroupAlert['severity'],
  message: string,
): void {
  const { s, group, requests } = run;
  setPhase(run, undefined);
  const at = new Date(Date.now()).toISOString();
  // One alert per problem: a cut failing (or skipped) again folds into the standing alert of its
  // kind (count, last time, latest message) until a good cut clears them all.
  const standing = s.alerts.find((a) => a.kind === kind);
  if (standing) {
    standing.count = (standing.count ?? 1) + 1;
    standing.lastAt = at;
    standing.message = message;
    if (severity === 'critical') standing.severity = 'critical';
  } else {
    s.alertSeq += 1;
    pushCapped(s.alerts, { id: `${group.name}-${s.alertSeq}`, at, severity, kind, message });
  }
  for (const r of requests) if (!r.done && !r.failed) r.failed = message;
  requests.splice(0, requests.length);
  log.warn('group alert', { group: group.name, kind, message });
}

export const pendingRequests = (run: GroupRun) => run.requests.some((r) => !r.done && !r.failed);

export function member(machine: string) {
  return getExternalWorkflowHandle(protectWorkflowId(machine));
}
