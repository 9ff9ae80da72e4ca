// A vCenter's VMs as discovered machines. vSphere's changed-block tracking is read through VDDK
// or NBD from the ESXi host, which OSR does not speak (and vcsim has no disk data behind it):
// VMware VMs are protected through OSR's in-guest agent instead, so tracking from the host is
// reported as not possible, with that reason.
import type { DiscoveredMachine } from '../../shared/host-types';
import type { VsphereInventory } from './inventory';

export const VMWARE_TRACKING_REASON =
  'VMware VMs are protected through the in-guest agent (`osr agent install --vm <host>/<vm>`), not from the vCenter: OSR reads no VMware changed-block tracking';

export function vmwareMachines(inventory: VsphereInventory, host: string): DiscoveredMachine[] {
  return inventory.vms.map((vm) => ({
    host,
    name: vm.name,
    state: vm.powerState,
    disks: vm.disks.map((d) => ({
      diskId: d.label,
      sizeBytes: d.capacityBytes,
      format: 'vmdk',
      location: d.fileName,
    })),
    changeTracking: { possible: false, reason: VMWARE_TRACKING_REASON },
    guestOs: vm.guestOs,
    ipAddresses: vm.ipAddresses,
    details: {
      datacenter: vm.datacenter,
      ...(vm.esxiHost ? { esxiHost: vm.esxiHost } : {}),
      vmId: vm.id,
      ...(vm.instanceUuid ? { instanceUuid: vm.instanceUuid } : {}),
      ...(vm.guestIp ? { guestIp: vm.guestIp } : {}),
    },
  }));
}
