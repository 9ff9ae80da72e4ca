// The recovered machine's NIC on the chosen subnet, with a static private IP when one is set.
import type { NetworkInterface } from '@azure/arm-network';
import type { ArmClients } from './clients';
import { names, recoveryTags, type RecoveryRef } from './naming';
import { findOwn } from './owned';

export interface NicTarget {
  ref: RecoveryRef;
  resourceGroup: string;
  location: string;
  subnetId: string;
  privateIp?: string;
}

export interface CreatedNic {
  name: string;
  id: string;
  privateIp?: string;
}

/** Creates the NIC, or finds the one a previous attempt made. */
export async function ensureNetworkInterface(arm: ArmClients, target: NicTarget): Promise<CreatedNic> {
  const { ref, resourceGroup } = target;
  const name = names.nic(ref);
  let nic = await findOwn('network interface', name, resourceGroup, ref, () =>
    arm.network.networkInterfaces.get(resourceGroup, name),
  );
  if (nic?.provisioningState !== 'Succeeded') {
    const body: NetworkInterface = {
      location: target.location,
      tags: recoveryTags(ref),
      ipConfigurations: [
        {
          name: 'ipconfig1',
          primary: true,
          subnet: { id: target.subnetId },
          privateIPAllocationMethod: target.privateIp ? 'Static' : 'Dynamic',
          ...(target.privateIp ? { privateIPAddress: target.privateIp } : {}),
        },
      ],
    };
    nic = await arm.network.networkInterfaces.beginCreateOrUpdateAndWait(resourceGroup, name, body, {
      updateIntervalInMs: arm.pollMs,
    });
  }
  return { name, id: nic.id ?? '', privateIp: nic.ipConfigurations?.[0]?.privateIPAddress };
}
