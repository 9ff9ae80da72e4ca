// A vCenter's inventory through vim25: RetrieveServiceContent, Login, one ContainerView per
// datacenter (its ESXi hosts and VMs), RetrievePropertiesEx and ContinueRetrievePropertiesEx
// (page by page), Logout. Only the properties discovery shows are asked for.
import { VsphereError } from './errors';
import { SoapSession, escapeXml, moRef, readMoRef, text, xsiType, type SoapTarget, type Xml } from './soap';

export interface VsphereCredentials extends SoapTarget {
  user: string;
  password: string;
}

export interface VsphereDisk {
  label: string;
  capacityBytes: number;
  /** Datastore path, e.g. `[LocalDS_0] vm1/disk1.vmdk`. */
  fileName?: string;
  thinProvisioned?: boolean;
}

export interface VsphereVm {
  id: string;
  name: string;
  powerState: string;
  guestOs?: string;
  /** `guest.ipAddress`: the primary address VMware Tools reports (none: no Tools, or not booted). */
  guestIp?: string;
  ipAddresses: string[];
  /** `config.instanceUuid`: the VM's identity across vCenter inventory moves. */
  instanceUuid?: string;
  disks: VsphereDisk[];
  esxiHost?: string;
  datacenter: string;
}

export interface VsphereInventory {
  /** `about.fullName`, e.g. "VMware vCenter Server 6.5.0 build-5973321". */
  product: string;
  datacenters: Array<{ name: string; hosts: string[] }>;
  vms: VsphereVm[];
}

type Ref = { type: string; value: string };
type Props = Map<string, unknown>;

const PAGE_SIZE = 100;
const VM_PROPERTIES = [
  'name',
  'runtime.powerState',
  'runtime.host',
  'config.guestFullName',
  'config.instanceUuid',
  'guest.ipAddress',
  'guest.net',
  'config.hardware.device',
];

/** Reads the inventory; always logs out (a vCenter limits sessions). */
export async function readInventory(target: VsphereCredentials): Promise<VsphereInventory> {
  const soap = new SoapSession(target);
  try {
    const content = (await soap.call(
      'RetrieveServiceContent',
      moRef('_this', { type: 'ServiceInstance', value: 'ServiceInstance' }),
    )) as Xml;
    const ref = (name: string): Ref => {
      const r = readMoRef(content?.[name]);
      if (!r) throw new VsphereError('not-vsphere', `the service content has no ${name}: not a vCenter`);
      return r;
    };
    const [rootFolder, propertyCollector, viewManager, sessionManager] = [
      ref('rootFolder'),
      ref('propertyCollector'),
      ref('viewManager'),
      ref('sessionManager'),
    ];
    const product = text((content.about as Xml | undefined)?.fullName);
    await soap.call(
      'Login',
      `${moRef('_this', sessionManager)}<userName>${escapeXml(target.user)}</userName><password>${escapeXml(target.password)}</password>`,
    );
    try {
      const retrieve = (container: Ref, types: Record<string, string[]>) =>
        retrieveFromView(soap, { propertyCollector, viewManager }, container, types);
      const dcs = await retrieve(rootFolder, { Datacenter: ['name'] });
      const inventory: VsphereInventory = { product, datacenters: [], vms: [] };
      for (const dc of dcs) {
        const dcName = text(dc.props.get('name'));
        const objects = await retrieve(dc.ref, { HostSystem: ['name'], VirtualMachine: VM_PROPERTIES });
        const hostNames = new Map(
          objects
            .filter((o) => o.ref.type === 'HostSystem')
            .map((o) => [o.ref.value, text(o.props.get('name'))]),
        );
        inventory.datacenters.push({ name: dcName, hosts: [...hostNames.values()].sort() });
        for (const o of objects.filter((x) => x.ref.type === 'VirtualMachine'))
          inventory.vms.push(readVm(o.ref, o.props, dcName, hostNames));
      }
      inventory.vms.sort((a, b) => a.datacenter.localeCompare(b.datacenter) || a.name.localeCompare(b.name));
      return inventory;
    } finally {
      await soap.call('Logout', moRef('_this', sessionManager)).catch(() => undefined);
    }
  } finally {
    soap.close();
  }
}

/** Every object of `types` below `container`, with the properties asked for, all pages. */
async function retrieveFromView(
  soap: SoapSession,
  managers: { propertyCollector: Ref; viewManager: Ref },
  container: Ref,
  types: Record<string, string[]>,
): Promise<Array<{ ref: Ref; props: Props }>> {
  const view = readMoRef(
    await soap.call(
      'CreateContainerView',
      moRef('_this', managers.viewManager) +
        moRef('container', container) +
        Object.keys(types)
          .map((t) => `<type>${t}</type>`)
          .join('') +
        '<recursive>true</recursive>',
    ),
  );
  if (!view) throw new VsphereError('not-vsphere', 'CreateContainerView returned no view');
  const propSets = Object.entries(types)
    .map(
      ([type, paths]) =>
        `<propSet><type>${type}</type>${paths.map((p) => `<pathSet>${p}</pathSet>`).join('')}</propSet>`,
    )
    .join('');
  const spec =
    `<specSet>${propSets}<objectSet>${moRef('obj', view)}<skip>true</skip>` +
    '<selectSet xsi:type="TraversalSpec"><name>view</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet>' +
    '</objectSet></specSet>';
  const out: Array<{ ref: Ref; props: Props }> = [];
  let result = (await soap.call(
    'RetrievePropertiesEx',
    `${moRef('_this', managers.propertyCollector)}${spec}<options><maxObjects>${PAGE_SIZE}</maxObjects></options>`,
  )) as Xml | undefined;
  for (;;) {
    for (const o of (result?.objects as Xml[] | undefined) ?? []) {
      const ref = readMoRef(o.obj);
      if (!ref) continue;
      const props: Props = new Map();
      for (const p of (o.propSet as Xml[] | undefined) ?? []) props.set(text(p.name), p.val);
      out.push({ ref, props });
    }
    const token = text(result?.token);
    if (!token) return out;
    result = (await soap.call(
      'ContinueRetrievePropertiesEx',
      `${moRef('_this', managers.propertyCollector)}<token>${escapeXml(token)}</token>`,
    )) as Xml | undefined;
  }
}

function readVm(ref: Ref, props: Props, datacenter: string, hostNames: Map<string, string>): VsphereVm {
  const hostRef = readMoRef(props.get('runtime.host'));
  const ips = new Set<string>();
  const primary = text(props.get('guest.ipAddress'));
  if (primary) ips.add(primary);
  const nics = (props.get('guest.net') as Xml | undefined)?.GuestNicInfo as Xml[] | undefined;
  for (const nic of nics ?? [])
    for (const ip of (nic.ipAddress as unknown[] | undefined) ?? []) ips.add(text(ip));
  const devices =
    ((props.get('config.hardware.device') as Xml | undefined)?.VirtualDevice as Xml[] | undefined) ?? [];
  const disks: VsphereDisk[] = devices
    .filter((d) => xsiType(d) === 'VirtualDisk')
    .map((d) => {
      const backing = d.backing as Xml | undefined;
      const bytes = Number(text(d.capacityInBytes)) || Number(text(d.capacityInKB)) * 1024;
      return {
        label: text((d.deviceInfo as Xml | undefined)?.label) || `disk-${text(d.key)}`,
        capacityBytes: bytes,
        fileName: text(backing?.fileName) || undefined,
        thinProvisioned:
          backing?.thinProvisioned === undefined ? undefined : text(backing.thinProvisioned) === 'true',
      };
    });
  return {
    id: ref.value,
    name: text(props.get('name')),
    powerState: text(props.get('runtime.powerState')) || 'unknown',
    guestOs: text(props.get('config.guestFullName')) || undefined,
    guestIp: primary || undefined,
    ipAddresses: [...ips].filter(Boolean),
    instanceUuid: text(props.get('config.instanceUuid')) || undefined,
    disks,
    esxiHost: hostRef ? (hostNames.get(hostRef.value) ?? hostRef.value) : undefined,
    datacenter,
  };
}
