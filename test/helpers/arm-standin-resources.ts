// What the ARM stand-in keeps: managed disks, NICs and VMs in memory, in the order they were
// created, with the checks ARM makes on the calls OSR sends (required fields, references that must
// exist, a disk or NIC in use cannot be deleted). Answers are ARM's shapes: { error: { code, message } }.

export type ResourceType = 'disks' | 'virtualMachines' | 'networkInterfaces';

export const PROVIDER: Record<ResourceType, string> = {
  disks: 'Microsoft.Compute',
  virtualMachines: 'Microsoft.Compute',
  networkInterfaces: 'Microsoft.Network',
};

/** The api-version each SDK OSR uses sends (arm-compute 24.1, arm-network 36): any other is refused. */
export const API_VERSIONS: Record<ResourceType, string> = {
  disks: '2025-01-02',
  virtualMachines: '2026-03-01',
  networkInterfaces: '2025-05-01',
};

export interface StoredResource {
  id: string;
  name: string;
  type: string;
  resourceGroup: string;
  kind: ResourceType;
  location: string;
  tags: Record<string, string>;
  sku?: unknown;
  properties: Record<string, unknown> & { provisioningState: string };
}

export class ArmError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
  body() {
    return { error: { code: this.code, message: this.message } };
  }
}

export function resourceId(sub: string, rg: string, kind: ResourceType, name: string): string {
  return `/subscriptions/${sub}/resourceGroups/${rg}/providers/${PROVIDER[kind]}/${kind}/${name}`;
}

export class ResourceStore {
  readonly byId = new Map<string, StoredResource>();
  /** Every creation, in order (a resource created, deleted and created again appears twice). */
  readonly creations: { kind: ResourceType; name: string; id: string }[] = [];
  readonly deletions: { kind: ResourceType; name: string }[] = [];
  private nextIp = 4;

  get(id: string): StoredResource | undefined {
    return this.byId.get(id.toLowerCase());
  }

  list(kind?: ResourceType, rg?: string): StoredResource[] {
    return [...this.byId.values()].filter(
      (r) => (!kind || r.kind === kind) && (!rg || r.resourceGroup.toLowerCase() === rg.toLowerCase()),
    );
  }

  /** PUT: creates or updates; returns whether it was created. Provisioning ends when the operation does. */
  put(
    sub: string,
    rg: string,
    kind: ResourceType,
    name: string,
    body: Record<string, unknown>,
  ): { resource: StoredResource; created: boolean } {
    const id = resourceId(sub, rg, kind, name);
    if (typeof body.location !== 'string' || !body.location)
      throw new ArmError(400, 'LocationRequired', 'The location property is required for this definition.');
    const props = (body.properties ?? {}) as Record<string, unknown>;
    this.validate(kind, props);
    const existing = this.get(id);
    const resource: StoredResource = {
      id,
      name,
      type: `${PROVIDER[kind]}/${kind}`,
      resourceGroup: rg,
      kind,
      location: body.location,
      tags: (body.tags ?? {}) as Record<string, string>,
      ...(body.sku ? { sku: body.sku } : {}),
      properties: {
        ...existing?.properties,
        ...props,
        provisioningState: existing ? 'Updating' : 'Creating',
      },
    };
    if (kind === 'networkInterfaces') this.assignAddresses(resource);
    this.byId.set(id.toLowerCase(), resource);
    if (!existing) this.creations.push({ kind, name, id });
    return { resource, created: !existing };
  }

  /** The long-running PUT ended: the resource is provisioned and what it refers to is in use. */
  provisioned(resource: StoredResource): void {
    resource.properties.provisioningState = 'Succeeded';
    if (resource.kind !== 'virtualMachines') return;
    for (const ref of this.vmRefs(resource)) {
      const r = this.get(ref)!;
      if (r.kind === 'disks') r.properties.diskState = 'Attached';
      r.properties[r.kind === 'disks' ? 'managedBy' : 'virtualMachine'] =
        r.kind === 'disks' ? resource.id : { id: resource.id };
    }
  }

  /** DELETE: refused while in use (as ARM does); returns whether there was one. */
  remove(id: string): boolean {
    const r = this.get(id);
    if (!r) return false;
    if (r.kind === 'disks' && r.properties.managedBy)
      throw new ArmError(
        409,
        'OperationNotAllowed',
        `Disk ${r.name} is attached to VM ${String(r.properties.managedBy)}.`,
      );
    if (r.kind === 'networkInterfaces' && r.properties.virtualMachine)
      throw new ArmError(400, 'NicInUse', `Network Interface ${r.id} is used by existing resource.`);
    if (r.kind === 'virtualMachines')
      for (const ref of this.vmRefs(r)) {
        const used = this.get(ref);
        if (used) delete used.properties[used.kind === 'disks' ? 'managedBy' : 'virtualMachine'];
        if (used?.kind === 'disks') used.properties.diskState = 'Unattached';
      }
    this.byId.delete(id.toLowerCase());
    this.deletions.push({ kind: r.kind, name: r.name });
    return true;
  }

  private vmRefs(vm: StoredResource): string[] {
    const p = vm.properties as {
      storageProfile?: {
        osDisk?: { managedDisk?: { id?: string } };
        dataDisks?: { managedDisk?: { id?: string } }[];
      };
      networkProfile?: { networkInterfaces?: { id?: string }[] };
    };
    return [
      p.storageProfile?.osDisk?.managedDisk?.id,
      ...(p.storageProfile?.dataDisks ?? []).map((d) => d.managedDisk?.id),
      ...(p.networkProfile?.networkInterfaces ?? []).map((n) => n.id),
    ].filter((x): x is string => typeof x === 'string');
  }

  private validate(kind: ResourceType, props: Record<string, unknown>): void {
    const bad = (message: string) => new ArmError(400, 'InvalidParameter', message);
    if (kind === 'disks') {
      const c = props.creationData as {
        createOption?: string;
        sourceUri?: string;
        storageAccountId?: string;
      };
      if (c?.createOption !== 'Import')
        throw bad('OSR imports disks only: creationData.createOption must be Import.');
      if (!c.sourceUri || !c.storageAccountId)
        throw bad('Required parameter creationData.sourceUri and creationData.storageAccountId are missing.');
    }
    if (kind === 'networkInterfaces') {
      const ip = (props.ipConfigurations as { properties?: { subnet?: { id?: string } } }[] | undefined)?.[0];
      if (!ip?.properties?.subnet?.id)
        throw bad('Required parameter ipConfigurations[0].subnet.id is missing.');
    }
    if (kind === 'virtualMachines') {
      for (const ref of this.vmRefs({ properties: props } as StoredResource))
        if (!this.get(ref))
          throw new ArmError(
            404,
            'NotFound',
            `Resource ${ref} referenced by the virtual machine was not found.`,
          );
    }
  }

  private assignAddresses(nic: StoredResource): void {
    const configs = (nic.properties.ipConfigurations ?? []) as { properties?: Record<string, unknown> }[];
    for (const c of configs) {
      c.properties ??= {};
      if (c.properties.privateIPAllocationMethod !== 'Static')
        c.properties.privateIPAddress = `10.200.0.${this.nextIp++}`;
    }
  }
}
