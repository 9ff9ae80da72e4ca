// The state of one protectMachine run: what is carried across continueAsNew (`s`), what lives only
// in this run (wake-ups, point requests, a group cut in progress), the activities, and the small
// synchronous helpers every part of the workflow uses (alerts, state, details, RPO, progress).
import {
  ActivityCancellationType,
  log,
  patched,
  proxyActivities,
  setCurrentDetails,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { CloudApplierActivities } from '../../activities/cloud-applier';
import type { ProcessServerActivities } from '../../activities/process-server';
import type {
  Alert,
  MachineState,
  MachineStatus,
  PointRequest,
  ProtectInput,
  ProtectState,
  SyncProgress,
} from '../../shared/contracts/protect-machine';
import type { GroupCut } from '../../shared/contracts/consistency-group';
import { FAILURE } from '../../shared/failures';
import type { ProtectedMachine, RecoveryPoint } from '../../shared/replication-types';
import { machineHealth, type HealthLevel } from '../../shared/machine-health';
import { OSR_HEALTH, OSR_RPO_SECONDS, OSR_STATE, OSR_SYNC_PERCENT } from '../../shared/search-attributes';
import { CLOUD_APPLIER_TASK_QUEUE } from '../../shared/task-queues';
import { processServerQueueOf } from '../lib/host-queue';
import { WORKER_HEARTBEAT_TIMEOUT } from '../lib/liveness';
import { clearAlerts, raiseAlert } from '../lib/alerts';
import { rpoSecondsSince } from '../lib/points';
import type { StorageWatch } from '../lib/storage-retry';

export interface PointRequestEntry {
  request: PointRequest;
  /** Made before a cycle asked for its freeze: that cycle's point is of a later time. */
  beforeFreeze?: boolean;
  done?: RecoveryPoint;
  failed?: string;
}

export interface ProtectRun {
  readonly input: ProtectInput;
  readonly machine: ProtectedMachine;
  /** Carried to the next run by continueAsNew. */
  readonly s: ProtectState;
  /** The process-server queue ps and quickPs schedule on (agent-routing.ts may move it). */
  queue: string;
  ps: ReturnType<typeof activities>['ps'];
  quickPs: ReturnType<typeof activities>['quickPs'];
  readonly applier: ReturnType<typeof activities>['applier'];
  readonly canQuiesce: boolean;
  readonly pointRequests: PointRequestEntry[];
  progress?: SyncProgress[];
  /** Set by handlers: the loop looks again at what to do. */
  wake: boolean;
  cyclesThisRun: number;
  keepReplica: boolean;
  pendingCut?: GroupCut;
  cutDecision?: { cut: number; go: boolean };
  /** Storage trouble seen during the cycle in progress; a cycle without any clears the alerts. */
  storageTroubleThisCycle: boolean;
  /** The storage helpers' view of this run (workflows/lib/storage-retry.ts). */
  readonly storage: StorageWatch;
  /**
   * Whether this run keeps the OsrHealth search attribute current (patched() once, at the start:
   * histories recorded before it replay without the upserts), and the level last upserted.
   */
  readonly healthAttribute: boolean;
  healthUpserted?: HealthLevel;
}

/** patched() id: runs that upsert OsrHealth whenever the machine's health changes. */
const PATCH_HEALTH_SEARCH_ATTRIBUTE = 'health-search-attribute';

/**
 * The activities on a process-server queue. `routed`: the queue of one process server (an
 * agent's): work nobody takes there within a minute fails (that server is gone), and the next
 * cycle looks where the agent is again.
 */
export function activities(queue: string, routed = false) {
  const toStart = routed ? { scheduleToStartTimeout: '1m' as const } : {};
  const ps = proxyActivities<ProcessServerActivities>({
    taskQueue: queue,
    ...toStart,
    startToCloseTimeout: '30m',
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: {
      initialInterval: '1s',
      maximumInterval: '30s',
      maximumAttempts: 20,
      nonRetryableErrorTypes: [FAILURE.SourceError],
    },
  });
  // A killed process server's freeze or release is found by its missing heartbeats, not after
  // the whole start-to-close timeout.
  const quickPs = proxyActivities<ProcessServerActivities>({
    taskQueue: queue,
    ...toStart,
    startToCloseTimeout: '2m',
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: {
      initialInterval: '1s',
      maximumInterval: '20s',
      maximumAttempts: 10,
      nonRetryableErrorTypes: [FAILURE.SourceError],
    },
  });
  // A killed applier's apply or publish goes out again within seconds too (same rule).
  const applier = proxyActivities<CloudApplierActivities>({
    taskQueue: CLOUD_APPLIER_TASK_QUEUE,
    startToCloseTimeout: '30m',
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: {
      initialInterval: '1s',
      maximumInterval: '30s',
      maximumAttempts: 20,
      nonRetryableErrorTypes: [FAILURE.SegmentCorrupt, FAILURE.CycleNotUploaded],
    },
  });
  return { queue, ps, quickPs, applier };
}

/**
 * The apply that follows a full copy's upload (sync-disk.ts) lasts as long as the transfer, which
 * can be many 30-min slices; the workflow waits for its cancellation to complete, so that no two
 * applies of a disk ever run at once.
 */
export const followingApplier = proxyActivities<CloudApplierActivities>({
  taskQueue: CLOUD_APPLIER_TASK_QUEUE,
  startToCloseTimeout: '24h',
  heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: {
    initialInterval: '1s',
    maximumInterval: '30s',
    maximumAttempts: 20,
    nonRetryableErrorTypes: [FAILURE.SegmentCorrupt, FAILURE.CycleNotUploaded],
  },
});

export function startRun(input: ProtectInput): ProtectRun {
  const machine = input.machine;
  const s: ProtectState = input.carried ?? {
    state: 'enabling',
    policy: input.policy,
    disks: [],
    cycle: 0,
    alerts: [],
    alertSeq: 0,
    stats: { cycles: 0, failedCycles: 0, bytesSent: 0, bytesChanged: 0 },
  };
  const run: ProtectRun = {
    input,
    machine,
    s,
    ...activities(processServerQueueOf(machine)),
    // A libvirt domain is quiesced through libvirt's own guest-agent channel (domfsfreeze), an
    // agent's machine by the agent (fsfreeze).
    canQuiesce:
      machine.source.type === 'libvirt' ||
      machine.source.type === 'agent' ||
      Boolean(machine.quiesce?.guestAgentSocket || machine.quiesce?.pre || machine.quiesce?.post),
    pointRequests: [],
    wake: false,
    cyclesThisRun: 0,
    keepReplica: false,
    storageTroubleThisCycle: false,
    healthAttribute: patched(PATCH_HEALTH_SEARCH_ATTRIBUTE),
    storage: {
      raise: (kind, severity, message) => raise(run, kind, severity, message),
      troubled: () => {
        run.storageTroubleThisCycle = true;
      },
      cycle: () => s.cycle,
      checkRpo: () => checkRpo(run),
    },
  };
  return run;
}

export const nowIso = () => new Date(Date.now()).toISOString();

export const rpoSeconds = (run: ProtectRun) => rpoSecondsSince(run.s.lastPoint?.instant);

export function status(run: ProtectRun): MachineStatus {
  const s = run.s;
  return {
    machine: run.machine.name,
    state: s.state,
    policy: s.policy,
    disks: s.disks,
    cycle: s.cycle,
    progress: run.progress,
    lastPoint: s.lastPoint,
    lastAppPoint: s.lastAppPoint,
    rpoSeconds: rpoSeconds(run),
    alerts: s.alerts,
    stats: s.stats,
    group: s.group,
    failing: s.failing && { ...s.failing, retryAt: new Date(s.failing.retryAt).toISOString() },
    protectedSince: run.machine.createdAt,
    health: health(run),
  };
}

/** The machine's health now (shared/machine-health.ts), on the workflow's clock. */
export function health(run: ProtectRun): MachineStatus['health'] {
  const s = run.s;
  return machineHealth(
    {
      state: s.state,
      policy: s.policy,
      lastPoint: s.lastPoint,
      alerts: s.alerts,
      failing: s.failing && { ...s.failing },
      protectedSince: run.machine.createdAt,
    },
    Date.now(),
  );
}

/** Upserts OsrHealth when the level changed (only in runs that took the patch: a new command). */
export function updateHealth(run: ProtectRun): void {
  if (!run.healthAttribute) return;
  const level = health(run)?.level;
  if (!level || level === run.healthUpserted) return;
  run.healthUpserted = level;
  upsertSearchAttributes([{ key: OSR_HEALTH, value: level }]);
}

/** Raises an alert, folded into the standing one of the same kind and subject (workflows/lib/alerts.ts). */
export function raise(
  run: ProtectRun,
  kind: Alert['kind'],
  severity: Alert['severity'],
  message: string,
  subject?: string,
): void {
  log.warn('alert', { machine: run.machine.name, kind, message });
  raiseAlert(run.s, run.machine.name, nowIso(), { kind, severity, message, subject });
  updateHealth(run);
}

export function clear(run: ProtectRun, kind: Alert['kind']): void {
  clearAlerts(run.s, kind);
  updateHealth(run);
}

export function setState(run: ProtectRun, next: MachineState): void {
  run.s.state = next;
  upsertSearchAttributes([{ key: OSR_STATE, value: next }]);
  showDetails(run);
}

/** What the Temporal Web UI shows as the workflow's current details: state, progress, last point. */
export function showDetails(run: ProtectRun): void {
  const { s, progress } = run;
  const parts: string[] = [s.state];
  if (progress?.length) {
    const done = progress.reduce((a, x) => a + x.bytesDone, 0);
    const all = progress.reduce((a, x) => a + x.bytesTotal, 0);
    parts.push(`cycle ${s.cycle}: ${all ? Math.floor((100 * done) / all) : 100}% of ${all} bytes`);
  }
  if (s.lastPoint) parts.push(`last point ${s.lastPoint.id} (${s.lastPoint.kind})`);
  if (s.group) parts.push(`group ${s.group}`);
  if (s.failing) parts.push(`failing: ${s.failing.failures} cycle(s) in a row, ${s.failing.reason}`);
  if (s.alerts.length) parts.push(`${s.alerts.length} alert(s), newest: ${s.alerts.at(-1)?.message ?? ''}`);
  setCurrentDetails(parts.join(' · '));
  updateHealth(run);
}

export function reportProgress(run: ProtectRun, p: SyncProgress): void {
  const progress = [...(run.progress ?? []).filter((x) => x.diskId !== p.diskId), p];
  run.progress = progress;
  showDetails(run);
  if (run.s.state === 'initial-sync' || run.s.state === 'resyncing') {
    const done = progress.reduce((a, x) => a + x.bytesDone, 0);
    const all = progress.reduce((a, x) => a + x.bytesTotal, 0);
    upsertSearchAttributes([
      { key: OSR_SYNC_PERCENT, value: all === 0 ? 100 : Math.floor((100 * done) / all) },
    ]);
  }
}

/** How often RPO is checked between cycles: often enough to alert within a tenth of the threshold. */
export function rpoCheckMs(run: ProtectRun): number {
  return Math.max(1000, Math.min(60_000, (run.s.policy.rpoThresholdSeconds * 1000) / 10));
}

export function checkRpo(run: ProtectRun): void {
  // Health changes with time alone (a point growing late, a first sync taking long): looked at here.
  updateHealth(run);
  const rpo = rpoSeconds(run);
  if (rpo === undefined) return;
  const s = run.s;
  upsertSearchAttributes([{ key: OSR_RPO_SECONDS, value: rpo }]);
  const exceeded = s.alerts.some((a) => a.kind === 'rpo-exceeded');
  if (rpo > s.policy.rpoThresholdSeconds && !exceeded) {
    raise(
      run,
      'rpo-exceeded',
      'critical',
      `RPO is ${rpo} s, over the policy's threshold of ${s.policy.rpoThresholdSeconds} s`,
    );
  } else if (rpo <= s.policy.rpoThresholdSeconds && exceeded) {
    clear(run, 'rpo-exceeded');
  }
}

export const pendingPoints = (run: ProtectRun) => run.pointRequests.some((r) => !r.done && !r.failed);

export function failPointRequests(run: ProtectRun, reason: string): void {
  for (const r of run.pointRequests) if (!r.done) r.failed = reason;
  run.pointRequests.splice(0, run.pointRequests.length);
}

export function refuseUnless(run: ProtectRun, states: MachineState[], action: string): void {
  if (!states.includes(run.s.state)) {
    throw new Error(`cannot ${action} machine ${run.machine.name} while it is ${run.s.state}`);
  }
}
