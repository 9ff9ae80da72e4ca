// failback: a planned failover back to the primary site, once reprotect has the original disks in
// sync. Stop the writes in the recovery site (QMP stop, virsh suspend, or the recovery-site copy's quiesce
// command), have reprotect run one last delta cycle and apply it, stop the recovery-site copy,
// bring the machine up on its original disks, remove what reading the recovery-site copy left. No write made in the recovery site is lost
// (invariant 7): every write acknowledged before the stop is in the final cycle.
import { proxyActivities, setHandler } from '@temporalio/workflow';
import type { MasterTargetActivities } from '../activities/master-target';
import type { ProcessServerActivities } from '../activities/process-server';
import { failbackStatusQuery, type FailbackInput, type FailbackStatus } from '../shared/contracts/failback';
import { reverseSourceQueue } from './lib/reverse-queue';
import { masterTargetQueueOf } from './lib/agent-queue';
import { forgetReverseSource, reverseCleanupPatched } from './lib/reverse-cleanup';
import { applier, control, tracker } from './failback-job';

export async function failback(input: FailbackInput): Promise<FailbackStatus> {
  const { machine, source } = input;
  const recoveryPs = proxyActivities<ProcessServerActivities>({
    taskQueue: reverseSourceQueue(source),
    startToCloseTimeout: '2m',
    retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 3 },
  });
  const masterTarget = (taskQueue: string) =>
    proxyActivities<MasterTargetActivities>({
      taskQueue,
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
      failure.message += `; the recovery-site copy's writes are still stopped: resume it (QMP cont, virsh resume of a libvirt domain, or its thaw command), the reprotect goes on`;
    throw failure;
  }
  try {
    await t.step('stop recovery-site copy', () =>
      applier.stopRecoveredDaemon({ machine: machine.name, job: input.failoverJob }),
    );
    // An agent machine's master target is where its agent is now (workflows/lib/agent-queue.ts).
    const mt = masterTarget(await masterTargetQueueOf(machine));
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
        ...(input.target.createdDir && input.target.qmpSocket && input.target.nbdSocket
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
    // Failed back for good: what reading the recovery-site copy left on its host goes.
    if (reverseCleanupPatched())
      await t.step(
        'remove recovery-site leftovers',
        () => forgetReverseSource(recoveryPs, source),
        (r) => r,
      );
  } catch (err) {
    throw t.fail(err);
  }
  t.setState('done');
  return t.status;
}
