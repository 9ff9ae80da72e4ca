// Removing what one recovery made: every VM, NIC and managed disk of the resource group whose tags
// name that machine, job and kind (VMs first: a NIC or disk in use cannot be deleted). Nothing
// without those tags is ever touched.
import type { ArmClients } from './clients';
import { madeBy, type RecoveryRef } from './naming';
import { isNotFound } from './owned';

export interface TaggedResource {
  type: 'virtualMachine' | 'networkInterface' | 'disk';
  name: string;
}

export async function listTaggedResources(
  arm: ArmClients,
  resourceGroup: string,
  ref: RecoveryRef,
): Promise<TaggedResource[]> {
  const out: TaggedResource[] = [];
  const collect = async (
    type: TaggedResource['type'],
    items: AsyncIterable<{ name?: string; tags?: Record<string, string> }>,
  ) => {
    for await (const r of items) if (r.name && madeBy(r.tags, ref)) out.push({ type, name: r.name });
  };
  await collect('virtualMachine', arm.compute.virtualMachines.list(resourceGroup));
  await collect('networkInterface', arm.network.networkInterfaces.list(resourceGroup));
  await collect('disk', arm.compute.disks.listByResourceGroup(resourceGroup));
  return out;
}

/** Deletes them in order (VMs, NICs, disks); returns what was deleted. A retry finds fewer. */
export async function deleteTaggedResources(
  arm: ArmClients,
  resourceGroup: string,
  ref: RecoveryRef,
): Promise<TaggedResource[]> {
  const found = await listTaggedResources(arm, resourceGroup, ref);
  const opts = { updateIntervalInMs: arm.pollMs };
  const gone = (p: Promise<unknown>) =>
    p.catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  for (const r of found) {
    if (r.type === 'virtualMachine')
      await gone(arm.compute.virtualMachines.delete(resourceGroup, r.name, opts));
    else if (r.type === 'networkInterface')
      await gone(arm.network.networkInterfaces.beginDeleteAndWait(resourceGroup, r.name, opts));
    else await gone(arm.compute.disks.delete(resourceGroup, r.name, opts));
  }
  return found;
}
