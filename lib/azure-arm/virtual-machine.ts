// The recovered VM: the imported disks attached (the first as OS disk), the NIC, the size chosen.
// No OS profile: the machine boots from its own disk as it was at the point.
import type { VirtualMachine } from '@azure/arm-compute';
import type { MachinePlatform } from '../../shared/replication-types';
import type { ArmClients } from './clients';
import { names, recoveryTags, type RecoveryRef } from './naming';
import { findOwn } from './owned';

export interface VmTarget {
  ref: RecoveryRef;
  resourceGroup: string;
  location: string;
  vmSize: string;
  platform: MachinePlatform;
  /** Managed disk ids, OS disk first. */
  diskIds: string[];
  nicId: string;
}

/** Creates the VM, or finds the one a previous attempt made. */
export async function ensureVirtualMachine(
  arm: ArmClients,
  target: VmTarget,
): Promise<{ name: string; id: string; size: string }> {
  const { ref, resourceGroup } = target;
  const name = names.vm(ref);
  let vm = await findOwn('virtual machine', name, resourceGroup, ref, () =>
    arm.compute.virtualMachines.get(resourceGroup, name),
  );
  if (vm?.provisioningState !== 'Succeeded') {
    const [os, ...data] = target.diskIds;
    if (!os) throw new Error('a VM needs at least one disk');
    const body: VirtualMachine = {
      location: target.location,
      tags: recoveryTags(ref),
      hardwareProfile: { vmSize: target.vmSize },
      storageProfile: {
        osDisk: { osType: target.platform.osType, createOption: 'Attach', managedDisk: { id: os } },
        dataDisks: data.map((id, lun) => ({ lun, createOption: 'Attach', managedDisk: { id } })),
      },
      networkProfile: { networkInterfaces: [{ id: target.nicId, primary: true }] },
    };
    vm = await arm.compute.virtualMachines.createOrUpdate(resourceGroup, name, body, {
      updateIntervalInMs: arm.pollMs,
    });
  }
  return { name, id: vm.id ?? '', size: target.vmSize };
}
