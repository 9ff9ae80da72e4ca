// What the failback and reenable jobs share: their activities on the control and cloud-applier
// workers, and the job's status with timed steps (served by the status query, mirrored in OsrState).
import { ApplicationFailure, log, proxyActivities, upsertSearchAttributes } from '@temporalio/workflow';
import type { RecoveryActivities } from '../activities/cloud-applier';
import type { ControlActivities } from '../activities/control';
import type { FailbackJobState, FailbackStatus } from '../shared/contracts/failback';
import { FAILURE } from '../shared/failures';
import { OSR_STATE } from '../shared/search-attributes';
import { CLOUD_APPLIER_TASK_QUEUE, CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { messageOf } from './lib/failures';
import { runStep } from './lib/steps';

export const control = proxyActivities<ControlActivities>({
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
export const applier = proxyActivities<RecoveryActivities>({
  taskQueue: CLOUD_APPLIER_TASK_QUEUE,
  startToCloseTimeout: '30m',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 5 },
});

/** A failback or reenable job's status and its steps recorder. */
/** A failback or reenable job's status and its steps recorder. */
export function tracker(initial: Pick<FailbackStatus, 'job' | 'kind' | 'machine'>) {
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
