// testFailover: a disaster-recovery drill. Builds the machine's disks from a chosen point in
// osr-failover under a `test-` prefix, optionally materializes and boot-checks them, and records
// the drill. It never talks to the machine's protectMachine workflow nor touches the replica, its
// snapshots or the catalog: replication goes on untouched (invariant 6).
// cleanupTestFailover removes exactly what one drill made.
import { CancellationScope, setHandler } from '@temporalio/workflow';
import { recoveryStatusQuery, type RecoveryStatus } from '../shared/contracts/recovery-job';
import type { CleanupTestFailoverInput, TestFailoverInput } from '../shared/contracts/test-failover';
import { createTracker, failed, recover, teardown } from './recovery-steps';

export async function testFailover(input: TestFailoverInput): Promise<RecoveryStatus> {
  const t = createTracker({ job: input.job, kind: 'drill', machine: input.machine.name });
  setHandler(recoveryStatusQuery, () => t.status);
  try {
    await recover(t, {
      kind: 'drill',
      job: input.job,
      machine: input.machine,
      point: input.point,
      settings: input.settings,
    });
  } catch (err) {
    // A drill that fails leaves nothing behind.
    await CancellationScope.nonCancellable(() =>
      teardown(t, {
        kind: 'drill',
        machine: input.machine.name,
        job: input.job,
        azure: input.settings?.target === 'azure',
        libvirt: input.settings?.target === 'libvirt',
      }),
    ).catch(() => undefined);
    t.setState('failed');
    throw failed(t, err);
  }
  t.setState('ready');
  return t.status;
}

export async function cleanupTestFailover(input: CleanupTestFailoverInput): Promise<RecoveryStatus> {
  const t = createTracker({ job: input.job, kind: 'drill-cleanup', machine: input.machine });
  setHandler(recoveryStatusQuery, () => t.status);
  try {
    await teardown(t, {
      kind: 'drill',
      machine: input.machine,
      job: input.drillJob,
      azure: input.azure,
      libvirt: input.libvirt,
    });
  } catch (err) {
    t.setState('failed');
    throw failed(t, err);
  }
  t.setState('cleaned-up');
  return t.status;
}
