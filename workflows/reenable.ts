// reenable: forward replication again, protectMachine started from the machine's registration;
// its replica page blobs were kept at commit, so its first cycle is a checksum resync (only the
// blocks that differ cross), never a full copy. Then the recovery-site copy and failover disks go
// and the machine may be failed over again.
import { proxyActivities, setHandler } from '@temporalio/workflow';
import type { MasterTargetActivities } from '../activities/master-target';
import { failbackStatusQuery, type FailbackStatus } from '../shared/contracts/failback';
import type { ReenableInput } from '../shared/contracts/reenable';
import { masterTargetQueueFor } from './lib/agent-queue';
import { applier, control, tracker } from './failback-job';

export async function reenable(input: ReenableInput): Promise<FailbackStatus> {
  const t = tracker({ job: input.job, kind: 'reenable', machine: input.machine });
  setHandler(failbackStatusQuery, () => t.status);
  const mt = proxyActivities<MasterTargetActivities>({
    // An agent machine's is in the process server holding its agent (its site may run none other).
    taskQueue: await masterTargetQueueFor(input.site, input.agentId),
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
