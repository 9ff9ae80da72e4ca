// failback: a planned failover back to the primary site, once reprotect has the original disks in
// sync. Stop the writes in the recovery site (QMP stop, or the recovery-site copy's quiesce
// command), have reprotect run one last delta cycle and apply it, stop the recovery-site copy,
// bring the machine up on its original disks. No write made in the recovery site is lost
// (invariant 7): every write acknowledged before the stop is in the final cycle.
//
// reenable: forward replication again, protectMachine started from the machine's registration;
// its replica page blobs were kept at commit, so its first cycle is a checksum resync (only the
// blocks that differ cross), never a full copy. Then the recovery-site copy and failover disks go
// and the machine may be failed over again.
import {
  ApplicationFailure,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { FAILURE } from '../shared/failures';
import type { RecoveryActivities } from '../activities/cloud-applier';
import type { ControlActivities } from '../activities/control';
import type { MasterTargetActivities } from '../activities/master-target';
import type { ProcessServerActivities } from '../activities/process-server';
import { OSR_STATE } from '../shared/search-attributes';
import {
  CLOUD_APPLIER_TASK_QUEUE,
  CONTROL_TASK_QUEUE,
  masterTargetQueue,
  processServerQueue,
} from '../shared/task-queues';
import {
  failbackStatusQuery,
  type FailbackInput,
  type FailbackJobState,
  type FailbackStatus,
} from '../shared/contracts/failback';
import type { ReenableInput } from '../shared/contracts/reenable';
import { messageOf } from './lib/failures';
import { runStep } from './recovery-steps';

const control = proxyActivities<ControlActivities>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '12h',
  heartbeatTimeout: '30s',
  retry: {
    initialInterval: '1s',
    maximumInterval: '20s',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [FAILURE.FinalCycleRefused],
  },
});
const applier = proxyActivities<RecoveryActivities>({
  taskQueue: CLOUD_APPLIER_TASK_QUEUE,
  startToCloseTimeout: '30m',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 5 },
});

function tracker(initial: Pick<FailbackStatus, 'job' | 'kind' | 'machine'>) {
  const status: FailbackStatus = { ...initial, state: 'running', steps: [] };
  return {
    status,
    step: <T>(name: string, run: () => Promise<T>, detail?: (r: T) => string | undefined): Promise<T> =>
      runStep(status.steps, name, run, detail),
    setState(state: FailbackJobState) {
      status.state = state;
      upsertSearchAttributes([{ key: OSR_STATE, value: state }]);
    },
    fail(err: unknown): ApplicationFailure {
      status.error = messageOf(err);
      status.state = 'failed';
      upsertSearchAttributes([{ key: OSR_STATE, value: 'failed' }]);
      log.warn('failback job failed', { job: status.job, error: status.error });
      return ApplicationFailure.create({
        type: FAILURE.FailbackFailed,
        message: status.error,
        nonRetryable: true,
      });
    },
  };
}

export async function failback(input: FailbackInput): Promise<FailbackStatus> {
  const { machine, source } = input;
  const recoveryPs = proxyActivities<ProcessServerActivities>({
    taskQueue: processServerQueue(source.site),
    startToCloseTimeout: '2m',
    retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 3 },
  });
  const mt = proxyActivities<MasterTargetActivities>({
    taskQueue: masterTargetQueue(machine.site),
    startToCloseTimeout: '30m',
    heartbeatTimeout: '30s',
    retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 10 },
  });
  const t = tracker({ job: input.job, kind: 'failback', machine: machine.name });
  setHandler(failbackStatusQuery, () => t.status);
  try {
    await t.step(
      'stop recovery-site writes',
      () => recoveryPs.stopSourceWrites({ machine: source }),
      (r) => `${r.method}: ${r.note}`,
    );
    t.status.finalCycle = await t.step(
      'final cycle',
      () => control.finalReverseCycle({ workflowId: input.reprotectWorkflowId }),
      (r) =>
        `reverse cycle ${r.cycle} (frozen ${r.instant}) applied to the original disks; ` +
        r.disks.map((d) => `${d.diskId}: ${d.sentBytes} bytes sent in all`).join(', '),
    );
  } catch (err) {
    const failure = t.fail(err);
    if (t.status.steps.some((s) => s.name === 'stop recovery-site writes' && s.state === 'done'))
      failure.message += `; the recovery-site copy's writes are still stopped: resume it (QMP cont, or its thaw command), the reprotect goes on`;
    throw failure;
  }
  try {
    await t.step('stop recovery-site copy', () =>
      applier.stopRecoveredDaemon({ machine: machine.name, job: input.failoverJob }),
    );
    await t.step(
      'bring up original',
      () => mt.bringUpOriginal({ machine, target: input.target }),
      (r) =>
        `${r.method}: ${r.note}` +
        (r.rolledBack.length ? `; rolled back ${JSON.stringify(r.rolledBack)}` : ''),
    );
    await t.step('record', () =>
      control.recordFailbackStage({
        machine: machine.name,
        stage: 'failed-back',
        failoverJob: input.failoverJob,
        failbackWorkflowId: `failback/${machine.name}/${input.job}`,
        ...(input.target.createdDir
          ? {
              newDisks: {
                qmpSocket: input.target.qmpSocket,
                nbdSocket: input.target.nbdSocket,
                dir: input.target.createdDir,
              },
            }
          : {}),
      }),
    );
  } catch (err) {
    throw t.fail(err);
  }
  t.setState('done');
  return t.status;
}

export async function reenable(input: ReenableInput): Promise<FailbackStatus> {
  const t = tracker({ job: input.job, kind: 'reenable', machine: input.machine });
  setHandler(failbackStatusQuery, () => t.status);
  const mt = proxyActivities<MasterTargetActivities>({
    taskQueue: masterTargetQueue(input.site),
    startToCloseTimeout: '10m',
    retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 5 },
  });
  try {
    await t.step('forget reverse state', () => mt.forgetReverseState({ machine: input.machine }));
    await t.step(
      'adopt new disks',
      () => control.adoptNewDisks({ machine: input.machine }),
      (adopted) =>
        adopted ? 'the machine is registered on the disks failback created' : 'the original disks are kept',
    );
    await t.step('start forward replication', () =>
      control.startForwardReplication({ machine: input.machine }),
    );
    t.status.reenable = await t.step(
      'resync',
      () => control.awaitForwardSynced({ machine: input.machine }),
      (r) =>
        `point ${r.lastPoint}: ${r.bytesSent} bytes sent for ${r.bytesChanged} bytes that differed (disks: ${r.diskBytes} bytes)`,
    );
    await t.step('remove recovery-site copy', async () => {
      await applier.dematerializeRecovered({ machine: input.machine, job: input.failoverJob });
      return applier.deleteRecoveredDisks({
        kind: 'failover',
        machine: input.machine,
        job: input.failoverJob,
      });
    });
    await t.step('release failover lock', () => control.finishReenable({ machine: input.machine }));
    await t.step('record', () =>
      control.recordFailbackStage({
        machine: input.machine,
        stage: 'reenabled',
        reenableWorkflowId: `reenable/${input.machine}/${input.job}`,
      }),
    );
  } catch (err) {
    throw t.fail(err);
  }
  t.setState('done');
  return t.status;
}
