// The azure target's steps of a recovery: managed disks imported from the failover blobs, then the
// NIC, then the VM, each its own activity (retried; each finds what an earlier attempt made).
// Taken only when the machine's recovery settings say target azure, so no older history reaches it.
import { proxyActivities } from '@temporalio/workflow';
import type { AzureTargetActivities } from '../activities/cloud-applier/azure-target';
import { FAILURE } from '../shared/failures';
import type { AzureResources, RecoveredDisk, RecoverySettings } from '../shared/recovery-types';
import type { ProtectedMachine } from '../shared/replication-types';
import { CLOUD_APPLIER_TASK_QUEUE } from '../shared/task-queues';
import type { Tracker } from './recovery-steps';

// ARM throttling (429) and conflicts (409) are retried by the SDK and then here.
const applier = proxyActivities<AzureTargetActivities>({
  taskQueue: CLOUD_APPLIER_TASK_QUEUE,
  startToCloseTimeout: '30m',
  retry: {
    initialInterval: '1s',
    maximumInterval: '30s',
    maximumAttempts: 8,
    nonRetryableErrorTypes: [FAILURE.AzureTargetRefused],
  },
});

export async function recoverIntoAzure(
  t: Tracker,
  input: {
    kind: 'drill' | 'failover';
    job: string;
    machine: ProtectedMachine;
    pointId: string;
    disks: RecoveredDisk[];
    settings: RecoverySettings;
  },
): Promise<AzureResources> {
  const step = {
    ref: { kind: input.kind, machine: input.machine.name, job: input.job },
    settings: input.settings.azure,
    platform: input.machine.platform,
  };
  const imported = await t.step(
    'azure disks',
    () => applier.azureImportDisks({ ...step, pointId: input.pointId, disks: input.disks }),
    (r) =>
      `${r.disks.length} managed disk(s) imported in ${r.placement.resourceGroup}: ${r.disks.map((d) => d.name).join(', ')}`,
  );
  const azure: AzureResources = { resourceGroup: imported.placement.resourceGroup, disks: imported.disks };
  t.status.azure = azure;
  azure.nic = await t.step(
    'azure nic',
    () => applier.azureCreateNic(step),
    (n) => `${n.name} on ${imported.placement.subnetId}${n.privateIp ? ` (${n.privateIp})` : ''}`,
  );
  azure.vm = await t.step(
    'azure vm',
    () => applier.azureCreateVm({ ...step, diskIds: imported.disks.map((d) => d.id), nicId: azure.nic!.id }),
    (v) => `${v.name} (${v.size})`,
  );
  return azure;
}
