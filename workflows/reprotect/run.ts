// The state of one reprotect run: the status carried across continueAsNew (`s`), what lives only in
// this run (requests from the handlers, the next cycle's modes), the activities, small helpers.
import { ApplicationFailure, log, proxyActivities, upsertSearchAttributes } from '@temporalio/workflow';
import type { MasterTargetActivities } from '../../activities/master-target';
import type { ProcessServerActivities } from '../../activities/process-server';
import type {
  FinalCycleResult,
  ReprotectInput,
  ReprotectState,
  ReprotectStatus,
} from '../../shared/contracts/reprotect';
import type { FailbackTargetDisk } from '../../shared/failback-types';
import { FAILURE } from '../../shared/failures';
import type { TransferMode } from '../../shared/replication-types';
import { OSR_STATE } from '../../shared/search-attributes';
import { masterTargetQueue } from '../../shared/task-queues';
import { WORKER_HEARTBEAT_TIMEOUT } from '../lib/liveness';
import { pushCapped } from '../lib/alerts';
import { reverseSourceQueue } from '../lib/reverse-queue';
import { masterTargetQueueOf } from '../lib/agent-queue';

export interface ReprotectRun {
  readonly input: ReprotectInput;
  /** Carried to the next run by continueAsNew; also what the status query answers. */
  readonly s: ReprotectStatus;
  readonly ps: ReturnType<typeof activities>['ps'];
  readonly quickPs: ReturnType<typeof activities>['quickPs'];
  /** The master target: the site's, or the one holding an agent machine's agent (routeMasterTarget). */
  mt: ReturnType<typeof masterTarget>;
  finalRequested: boolean;
  finalResult?: FinalCycleResult;
  finalFailed?: string;
  stopRequested: boolean;
  /** Set by handlers: the loop looks again at what to do. */
  wake: boolean;
  cyclesThisRun: number;
  lastCycleAt: number;
  lastFailed: boolean;
  /** The next cycle's transfer mode per recovery-site disk. */
  readonly nextMode: Record<string, TransferMode>;
}

function activities(input: ReprotectInput) {
  const retry = { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 20 } as const;
  const sourceQueue = reverseSourceQueue(input.source);
  const ps = proxyActivities<ProcessServerActivities>({
    taskQueue: sourceQueue,
    startToCloseTimeout: '30m',
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: { ...retry, nonRetryableErrorTypes: [FAILURE.SourceError] },
  });
  const quickPs = proxyActivities<ProcessServerActivities>({
    taskQueue: sourceQueue,
    startToCloseTimeout: '2m',
    heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
    retry: { ...retry, maximumAttempts: 10, nonRetryableErrorTypes: [FAILURE.SourceError] },
  });
  return { ps, quickPs, mt: masterTarget(masterTargetQueue(input.machine.site)) };
}

function masterTarget(taskQueue: string) {
  return proxyActivities<MasterTargetActivities>({
    taskQueue,
    startToCloseTimeout: '30m',
    heartbeatTimeout: '15s',
    retry: {
      initialInterval: '1s',
      maximumInterval: '30s',
      maximumAttempts: 20,
      nonRetryableErrorTypes: [FAILURE.SegmentCorrupt],
    },
  });
}

/**
 * An agent machine's master target is in the process server holding its agent, which may change
 * (the agent reconnects elsewhere): looked up before the prepare and before each cycle.
 */
export async function routeMasterTarget(run: ReprotectRun): Promise<void> {
  if (run.input.machine.source.type === 'agent')
    run.mt = masterTarget(await masterTargetQueueOf(run.input.machine));
}

export function startRun(input: ReprotectInput): ReprotectRun {
  const { machine, source } = input;
  const s: ReprotectStatus = input.carried ?? {
    machine: machine.name,
    job: input.job,
    failoverJob: input.failoverJob,
    state: 'preparing',
    source,
    nodes: input.nodes,
    cycle: 0,
    cycles: 0,
    failedCycles: 0,
    disks: [],
    alerts: [],
  };
  const run: ReprotectRun = {
    input,
    s,
    ...activities(input),
    finalRequested: false,
    stopRequested: false,
    wake: false,
    cyclesThisRun: 0,
    lastCycleAt: 0,
    lastFailed: false,
    nextMode: {},
  };
  for (const d of s.disks) run.nextMode[d.diskId] = 'delta';
  return run;
}

const nowIso = () => new Date(Date.now()).toISOString();

export function setState(run: ReprotectRun, state: ReprotectState): void {
  run.s.state = state;
  upsertSearchAttributes([{ key: OSR_STATE, value: state }]);
}

export function alert(run: ReprotectRun, message: string): void {
  pushCapped(run.s.alerts, { at: nowIso(), message });
  log.warn('reprotect alert', { machine: run.input.machine.name, message });
}

/** The recovery-site disk (node) that replicates onto an original disk. */
export function nodeOf(run: ReprotectRun, diskId: string): string {
  return run.s.nodes[diskId] ?? diskId;
}

/** The target disk as the master target addresses it: named like the recovery-site node. */
export function targetOf(run: ReprotectRun, node: string): FailbackTargetDisk {
  const t = run.s.target?.disks.find((d) => nodeOf(run, d.diskId) === node);
  if (!t) throw ApplicationFailure.nonRetryable(`no original disk for recovery-site disk ${node}`);
  return { ...t, diskId: node };
}
