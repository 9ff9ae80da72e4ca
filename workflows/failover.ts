// failover: one machine to the recovery site. Unplanned: from the chosen point. Planned: stop the
// source's writes, have protectMachine cut a final point, fail over from it (no write lost; an
// agent machine's writes come back if it fails or is cancelled: lib/agent-stop.ts). Then
// it waits for the operator: `changeRecoveryPoint` rebuilds the disks from another point (any
// number of times), `commit` ends forward replication, keeping the replica and its points for
// reprotect, and completes the job. The vault lock taken by the operation is released when the
// job ends uncommitted.
import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  proxyActivities,
  setHandler,
} from '@temporalio/workflow';
import { FAILURE } from '../shared/failures';
import type { ControlActivities } from '../activities/control';
import type { ProcessServerActivities } from '../activities/process-server';
import type { RecoveryPoint } from '../shared/replication-types';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { changeRecoveryPointUpdate, commitUpdate, type FailoverInput } from '../shared/contracts/failover';
import { recoveryStatusQuery, type RecoveryStatus } from '../shared/contracts/recovery-job';
import { createTracker, failed, recover, teardown } from './recovery-steps';
import { processServerQueueOf } from './lib/host-queue';
import { agentWriteStopper, type WriteStopper } from './lib/agent-stop';

const control = proxyActivities<ControlActivities>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '30m',
  heartbeatTimeout: '30s',
  retry: {
    initialInterval: '1s',
    maximumInterval: '20s',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [FAILURE.FinalPointRefused],
  },
});

export async function failover(input: FailoverInput): Promise<RecoveryStatus> {
  const machine = input.machine;
  const ps = proxyActivities<ProcessServerActivities>({
    taskQueue: processServerQueueOf(machine),
    startToCloseTimeout: '2m',
    retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 3 },
  });
  const t = createTracker({
    job: input.job,
    kind: 'failover',
    machine: machine.name,
    planned: input.planned,
  });
  let busy = false;
  let done = false;
  const ref = {
    kind: 'failover' as const,
    machine: machine.name,
    job: input.job,
    azure: input.settings?.target === 'azure',
    libvirt: input.settings?.target === 'libvirt',
  };

  setHandler(recoveryStatusQuery, () => t.status);
  setHandler(
    changeRecoveryPointUpdate,
    async ({ point }) => {
      busy = true;
      t.setState('running');
      try {
        // Same names, new content: the old disks go first, so nothing of the old point survives.
        await teardown(t, { ...ref, keepRecord: true });
        t.status.disks = [];
        t.status.materialized = undefined;
        t.status.bootCheck = undefined;
        t.status.azure = undefined;
        t.status.libvirt = undefined;
        await recover(t, { kind: 'failover', job: input.job, machine, point, settings: input.settings });
        t.status.error = undefined;
      } catch (err) {
        throw failed(t, err);
      } finally {
        t.setState('failed-over');
        busy = false;
      }
      return t.status;
    },
    {
      validator: ({ point }) => {
        refuseUnlessWaiting('change the recovery point of');
        if (point?.machine !== machine.name)
          throw new Error(`point ${point?.id} is not a point of ${machine.name}`);
      },
    },
  );
  setHandler(
    commitUpdate,
    async () => {
      busy = true;
      try {
        t.status.committed = await t.step(
          'commit',
          () => control.endForwardReplication({ machine: machine.name, job: input.job }),
          (c) =>
            `forward replication disabled; kept ${c.replicaBlobs.length} replica disk(s) and ${c.keptPoints} point(s)`,
        );
        t.setState('committed');
        done = true;
      } catch (err) {
        throw failed(t, err);
      } finally {
        busy = false;
      }
      return t.status;
    },
    { validator: () => refuseUnlessWaiting('commit') },
  );
  function refuseUnlessWaiting(action: string): void {
    if (t.status.state !== 'failed-over' || busy)
      throw new Error(
        `cannot ${action} failover ${input.job} of ${machine.name} while it is ${busy ? 'busy' : t.status.state}`,
      );
  }

  let agentStop: WriteStopper | undefined;
  try {
    let point: RecoveryPoint | undefined = input.point;
    if (input.planned) {
      agentStop = (await agentWriteStopper(machine))?.ps;
      await t.step(
        'stop source writes',
        () => (agentStop ?? ps).stopSourceWrites({ machine }),
        (r) => `${r.method}: ${r.note}`,
      );
      point = await t.step(
        'final point',
        () => control.cutFinalPoint({ machine: machine.name }),
        (p) => `point ${p.id} at ${p.instant}`,
      );
    }
    if (!point) throw ApplicationFailure.nonRetryable('an unplanned failover needs a point');
    await recover(t, { kind: 'failover', job: input.job, machine, point, settings: input.settings });
  } catch (err) {
    t.setState('failed');
    const stopped = t.status.steps.some((s) => s.name === 'stop source writes' && s.state === 'done');
    let resumed: string | undefined;
    await CancellationScope.nonCancellable(async () => {
      await teardown(t, ref).catch(() => undefined);
      // An agent machine gets its writes back (the stop was tried: it may have taken).
      if (agentStop && t.status.steps.some((s) => s.name === 'stop source writes'))
        resumed = await agentStop.resumeSourceWrites({ machine }).catch(() => undefined);
      await control.releaseFailoverLock({ machine: machine.name, job: input.job });
    });
    const failure = failed(t, err);
    const agentId = machine.source.type === 'agent' ? machine.source.agentId : undefined;
    if (resumed && stopped) failure.message += `; ${resumed}`;
    else if (input.planned && stopped)
      failure.message += agentId
        ? `; the machine's writes are still stopped: resume them (\`osr agent resume ${agentId}\`) or fail over unplanned`
        : `; the source's writes are still stopped: resume it (QMP cont, or its thaw command) or fail over unplanned`;
    throw failure;
  }
  t.setState('failed-over');

  await condition(() => done && allHandlersFinished());
  return t.status;
}
