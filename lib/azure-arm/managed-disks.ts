// Managed disks imported from the failover page blobs (fixed VHDs): createOption Import with the
// blob's URL and the storage account's resource id. One per disk of the point; the first is the OS
// disk and carries the OS type and Hyper-V generation protect recorded.
import type { Disk } from '@azure/arm-compute';
import type { AzureDiskType } from '../../shared/recovery-types';
import type { MachinePlatform } from '../../shared/replication-types';
import type { ArmClients } from './clients';
import { TAG, names, recoveryTags, type RecoveryRef } from './naming';
import { findOwn } from './owned';

export interface DiskImportTarget {
  ref: RecoveryRef;
  resourceGroup: string;
  location: string;
  storageAccountId: string;
  diskType: AzureDiskType;
  platform: MachinePlatform;
  pointId: string;
}

export interface DiskSource {
  diskId: string;
  /** URL of the failover page blob (a fixed VHD) in osr-failover. */
  sourceUri: string;
  os: boolean;
}

export interface ImportedDisk {
  diskId: string;
  name: string;
  id: string;
  sourceUri: string;
}

/** Imports one disk, or finds the one a previous attempt imported from the same point. */
export async function importManagedDisk(
  arm: ArmClients,
  target: DiskImportTarget,
  source: DiskSource,
): Promise<ImportedDisk> {
  const { ref, resourceGroup } = target;
  const name = names.disk(ref, source.diskId);
  const opts = { updateIntervalInMs: arm.pollMs };
  let disk = await findOwn('managed disk', name, resourceGroup, ref, () =>
    arm.compute.disks.get(resourceGroup, name),
  );
  // Ours, but of another point (a change of point interrupted before its teardown ended).
  if (disk && disk.tags?.[TAG.point] !== target.pointId) {
    await arm.compute.disks.delete(resourceGroup, name, opts);
    disk = undefined;
  }
  if (disk?.provisioningState !== 'Succeeded') {
    const body: Disk = {
      location: target.location,
      tags: recoveryTags(ref, { [TAG.point]: target.pointId, [TAG.disk]: source.diskId }),
      sku: { name: target.diskType },
      ...(source.os
        ? { osType: target.platform.osType, hyperVGeneration: target.platform.hyperVGeneration }
        : {}),
      creationData: {
        createOption: 'Import',
        sourceUri: source.sourceUri,
        storageAccountId: target.storageAccountId,
      },
    };
    disk = await arm.compute.disks.createOrUpdate(resourceGroup, name, body, opts);
  }
  return { diskId: source.diskId, name, id: disk.id ?? '', sourceUri: source.sourceUri };
}
