// The public face of the protectMachine entity workflow: its input, status, updates and query.
// Pure definitions, shared by the workflow, the CLI and the API.
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type {
  PointKind,
  ProtectedMachine,
  RecoveryPoint,
  ReplicationPolicy,
  TransferMode,
} from '../replication-types';
import type { MachineHealth } from '../machine-health';
import type { AzureReadiness } from '../azure-readiness';

export type MachineState =
  | 'enabling'
  | 'initial-sync'
  | 'protected'
  | 'resyncing'
  | 'paused'
  | 'disabling'
  | 'disabled';

export interface Alert {
  id: string;
  at: string;
  severity: 'warning' | 'critical';
  kind:
    | 'rpo-exceeded'
    | 'cycle-failed'
    | 'resync-needed'
    | 'segment-corrupt'
    | 'disk-shrunk'
    | 'disk-vanished'
    | 'disk-added'
    | 'tracking-volatile'
    | 'quiesce-failed'
    | 'storage-rolled-back'
    // The storage endpoint throttled (503 Server Busy / 500) or did not answer in time; the
    // requests are retried with backoff, nothing is lost; cleared after a cycle without trouble.
    | 'storage-throttled'
    | 'storage-unreachable'
    // The machine's QMP monitor or NBD export does not answer (the VM or storage daemon is gone):
    // cycles back off until it answers again; cleared by the next published point.
    | 'source-unreachable'
    // Added by the control plane, not the workflow: the machine's consistency group could not cut
    // (or skipped) a group point; folded per group, cleared by the group's next good cut.
    | 'group-cut-failed'
    | 'group-cut-skipped'
    // Added by the control plane: every process server of the machine's host is stale or gone.
    | 'host-server-lost'
    // Added by the control plane from the machine's agent's reports (lib/agents/store-alerts.ts):
    // the filesystem holding its point store is low on room, or points were given up because it
    // is full; cleared when room is back, or when a later point is kept.
    | 'agent-store-low'
    | 'agent-store-full'
    // The primary host's clock is off Temporal's by more than CLOCK_SKEW_ALERT_MS at a freeze
    // (shared/point-order.ts): points are labelled by Temporal's time; cleared by a freeze in range.
    | 'clock-skew'
    // Informational (not counted in health): a point was published after failed cycles or a
    // resync, saying what happened; cleared by a point published RESUMED_ALERT_MS after it.
    | 'replication-resumed';
  message: string;
  /** The disk the alert is about, where it is about one: problems fold per kind and disk. */
  subject?: string;
  /** How many times this problem was seen (one alert per problem, not per occurrence). */
  count?: number;
  /** When it was last seen (`at` is the first time). */
  lastAt?: string;
}

/** Cycles that keep failing: the machine backs off, and says so, until one succeeds. */
export interface CycleFailing {
  /** When the first of these consecutive failures happened. */
  since: string;
  /** Consecutive failed cycles. */
  failures: number;
  /** The latest failure's reason. */
  reason: string;
  /** The source did not answer (as opposed to a failure in storage or the pipeline). */
  sourceUnreachable: boolean;
  /** Workflow time (ms) of the next try, unless a point is asked for before. */
  retryAt: number;
}

export interface DiskStatus {
  diskId: string;
  sizeBytes: number;
  /** The replica holds a complete image of this disk (a point can include it). */
  synced: boolean;
  /** What the next cycle sends for it. */
  nextMode: TransferMode;
  excluded?: string;
}

export interface SyncProgress {
  diskId: string;
  mode: TransferMode;
  segmentsDone: number;
  segmentsTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface MachineStatus {
  machine: string;
  state: MachineState;
  policy: ReplicationPolicy;
  disks: DiskStatus[];
  cycle: number;
  progress?: SyncProgress[];
  lastPoint?: Pick<RecoveryPoint, 'id' | 'instant' | 'kind'>;
  lastAppPoint?: Pick<RecoveryPoint, 'id' | 'instant' | 'kind'>;
  /** Seconds between now and the instant of the newest point (undefined before the first). */
  rpoSeconds?: number;
  alerts: Alert[];
  stats: { cycles: number; failedCycles: number; bytesSent: number; bytesChanged: number };
  group?: string;
  /** Present while cycles keep failing: since when, how often, why, and when the next try is. */
  failing?: Omit<CycleFailing, 'retryAt'> & { retryAt: string };
  /** When protection started (the registration's time): RPO before the first point counts from it. */
  protectedSince?: string;
  /** healthy / warning / critical with the reasons: shared/machine-health.ts, shown everywhere. */
  health?: MachineHealth;
  /** The Azure readiness check recorded at protect (operations/health.ts adds it; the workflow never sets it). */
  azureReadiness?: AzureReadiness;
}

/** State carried across continueAsNew; also the workflow's whole memory. */
export interface ProtectState {
  state: MachineState;
  pausedFrom?: MachineState;
  policy: ReplicationPolicy;
  disks: DiskStatus[];
  cycle: number;
  /** Workflow time (ms) the last cycle started; the next is due a policy interval later. */
  lastCycleAt?: number;
  lastPoint?: Pick<RecoveryPoint, 'id' | 'instant' | 'kind'>;
  lastAppPoint?: Pick<RecoveryPoint, 'id' | 'instant' | 'kind'>;
  alerts: Alert[];
  alertSeq: number;
  stats: MachineStatus['stats'];
  /** The consistency group this machine belongs to: the group, not the policy, times its points. */
  group?: string;
  /** The last cycle published: storage reporting an older one lost acknowledged writes. */
  publishedCycle?: number;
  /** Consecutive failed cycles, and the backoff before the next (absent while cycles succeed). */
  failing?: CycleFailing;
  /** Points in time a failed cycle could not release (source unreachable): released first next time. */
  unreleased?: string[];
  /** This protection's place among the machine's protections (point-order; Temporal's time). */
  protection?: string;
}

export interface ProtectInput {
  machine: ProtectedMachine;
  policy: ReplicationPolicy;
  /** Present after continueAsNew. */
  carried?: ProtectState;
  /** Cycles per run before continueAsNew (default 100). */
  maxCyclesPerRun?: number;
}

export interface PointRequest {
  kind: PointKind;
  tag?: string;
}

export const statusQuery = defineQuery<MachineStatus>('status');
export const pauseUpdate = defineUpdate<MachineStatus, [{ reason?: string }]>('pause');
export const resumeUpdate = defineUpdate<MachineStatus>('resume');
export const resyncUpdate = defineUpdate<MachineStatus>('resync');
export const changePolicyUpdate = defineUpdate<MachineStatus, [ReplicationPolicy]>('changePolicy');
export const disableUpdate = defineUpdate<MachineStatus, [{ keepReplica?: boolean }]>('disable');
/** Cuts a recovery point now (after the one in progress) and returns it once it is published. */
export const takePointUpdate = defineUpdate<Pick<RecoveryPoint, 'id' | 'instant' | 'kind'>, [PointRequest]>(
  'takePoint',
);

export function protectWorkflowId(machine: string): string {
  return `protect/${machine}`;
}
