// Per-machine recovery settings (vault: recovery-settings/<machine>.json): the boot check a drill
// or failover runs, whether recovered disks are materialized as local images, and the recovery
// target (local, or azure with its resource group, VM size, disk type and subnets).
import type { AzureTargetSettings, RecoverySettings } from '../shared/recovery-types';
import { AZURE_DISK_TYPES, recoveryDocs } from '../shared/recovery-types';
import { checkName } from '../shared/names';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';
import { registeredMachine } from './machines';
import { PlacementError, resolvePlacement } from '../lib/azure-arm/placement';
import type { ProtectedMachine } from '../shared/replication-types';
import type { PlanNetwork } from '../shared/plan-types';
import { keptDomainDoc, type KeptDomain, type LibvirtTargetSettings } from '../shared/libvirt-target';
import { getHost } from './hosts';

export async function getRecoverySettings(ctx: ControlContext, machine: string): Promise<RecoverySettings> {
  checkName('machine', machine);
  return (await ctx.vault.read<RecoverySettings>(recoveryDocs.settings(machine)))?.value ?? { machine };
}

export /**
 * The settings a drill or failover starts with; with target azure, refused now (with the fix)
 * when the recovery could not be placed, before anything starts.
 */
async function settingsToStart(
  ctx: ControlContext,
  machine: ProtectedMachine,
  kind: 'drill' | 'failover',
  planNetworks?: PlanNetwork[],
): Promise<RecoverySettings> {
  const settings = withPlanNetwork(await getRecoverySettings(ctx, machine.name), planNetworks);
  if (settings.target === 'libvirt') return libvirtToStart(ctx, machine.name, settings);
  if (settings.target === 'azure') {
    try {
      resolvePlacement(ctx.config.azure, machine.name, settings.azure, machine.platform, kind);
    } catch (err) {
      if (err instanceof PlacementError)
        throw new OperationError(`${err.message}. Nothing was started.`, 'invalid');
      throw err;
    }
  }
  return settings;
}

/**
 * A plan's network mapping applied to a machine: a libvirt target's NICs by their primary-site
 * network (`libvirtNetwork`), an azure target's subnets by the machine's source network.
 */
export function withPlanNetwork(settings: RecoverySettings, networks: PlanNetwork[] = []): RecoverySettings {
  if (settings.target === 'libvirt' && settings.libvirt) {
    const mapped = networks.filter((n) => n.libvirtNetwork);
    if (!mapped.length) return settings;
    const map = { ...settings.libvirt.networks };
    for (const n of mapped) map[n.source] = n.libvirtNetwork!;
    return { ...settings, libvirt: { ...settings.libvirt, networks: map } };
  }
  const source = settings.azure?.sourceNetwork;
  const mapped = source === undefined ? undefined : networks.find((n) => n.source === source && n.subnetId);
  if (settings.target !== 'azure' || !settings.azure || !mapped?.subnetId) return settings;
  return {
    ...settings,
    azure: {
      ...settings.azure,
      subnetId: mapped.subnetId,
      drillSubnetId: mapped.drillSubnetId ?? settings.azure.drillSubnetId,
      drillOnProductionSubnet: mapped.drillOnProductionSubnet ?? settings.azure.drillOnProductionSubnet,
    },
  };
}

export type RecoveryChange = {
  bootCheck?: RecoverySettings['bootCheck'] | null;
  materialize?: RecoverySettings['materialize'] | null;
  target?: 'local' | 'azure' | 'libvirt';
  /** Merged into the current libvirt settings (a field set to null is removed). */
  libvirt?: { [K in keyof LibvirtTargetSettings]?: LibvirtTargetSettings[K] | null };
  /** Merged into the current azure settings (a field set to null is removed). */
  azure?: { [K in keyof AzureTargetSettings]?: AzureTargetSettings[K] | null };
};

/** Sets a machine's boot check and materialization (each replaced as given; `null` removes it). */
export const configureRecovery = audited(
  'recovery.configure',
  (ctx: ControlContext, machine: string, change: RecoveryChange) =>
    storeRecoverySettings(ctx, machine, change),
  (_ctx, machine, change) => ({ target: machine, details: { ...change } }),
);

async function storeRecoverySettings(
  ctx: ControlContext,
  machine: string,
  change: RecoveryChange,
): Promise<RecoverySettings> {
  await registeredMachine(ctx, machine);
  if (change.bootCheck && (!change.bootCheck.command.trim() || !change.bootCheck.probe.trim()))
    throw new OperationError('a boot check needs both a command and a probe command', 'invalid');
  if (change.materialize && !['qcow2', 'raw'].includes(change.materialize.format))
    throw new OperationError(
      `materialize format must be qcow2 or raw, not ${change.materialize.format}`,
      'invalid',
    );
  if (change.target && !['local', 'azure', 'libvirt'].includes(change.target))
    throw new OperationError(
      `recovery target must be local, azure or libvirt, not ${change.target}`,
      'invalid',
    );
  if (change.libvirt?.recoveryHost) await recoveryHostProblem(ctx, machine, change.libvirt.recoveryHost);
  if (change.libvirt?.consolePattern) {
    try {
      new RegExp(change.libvirt.consolePattern);
    } catch (err) {
      throw new OperationError(
        `--console-pattern ${JSON.stringify(change.libvirt.consolePattern)} is not a regular expression (${(err as Error).message}): give e.g. 'login:'`,
        'invalid',
      );
    }
  }
  if (change.target === 'libvirt') await keptDomainOf(ctx, machine);
  return ctx.vault.update<RecoverySettings>(recoveryDocs.settings(machine), (current) => {
    const next: RecoverySettings = { ...(current ?? { machine }) };
    if (change.target) next.target = change.target;
    if (change.libvirt) next.libvirt = mergeLibvirt(next.libvirt, change.libvirt);
    if (next.target === 'libvirt' && !next.libvirt?.recoveryHost)
      throw new OperationError(
        `the libvirt target needs --recovery-host <a libvirt host added with \`osr host add <name> --libvirt <uri>\`> (\`osr failover configure ${machine} --target libvirt --recovery-host <host>\`)`,
        'invalid',
      );
    if (change.azure) next.azure = mergeAzure(next.azure, change.azure);
    if (next.target === 'azure') azureProblem(machine, next.azure);
    if (change.bootCheck === null) delete next.bootCheck;
    else if (change.bootCheck) next.bootCheck = change.bootCheck;
    if (change.materialize === null) delete next.materialize;
    else if (change.materialize) next.materialize = change.materialize;
    return next;
  });
}

function mergeLibvirt(
  current: LibvirtTargetSettings | undefined,
  change: NonNullable<RecoveryChange['libvirt']>,
): LibvirtTargetSettings {
  const next: Record<string, unknown> = { ...current };
  for (const [k, v] of Object.entries(change)) {
    // The URI is resolved at each start, never stored: the host's record is the one place for it.
    if (k === 'uri') continue;
    if (v === null) delete next[k];
    else if (v !== undefined) next[k] = v;
  }
  return next as unknown as LibvirtTargetSettings;
}

function mergeAzure(current: AzureTargetSettings | undefined, change: NonNullable<RecoveryChange['azure']>) {
  const next: Record<string, unknown> = { ...current };
  for (const [k, v] of Object.entries(change)) {
    if (v === null) delete next[k];
    else if (v !== undefined) next[k] = v;
  }
  return next as unknown as AzureTargetSettings;
}

const SUBNET_ID =
  /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Network\/virtualNetworks\/[^/]+\/subnets\/[^/]+$/i;

/** Refuses azure settings a recovery could not use, naming the option that fixes each. */
function azureProblem(machine: string, a: AzureTargetSettings | undefined): void {
  const fix = `osr failover configure ${machine} --target azure`;
  const missing = [
    !a?.resourceGroup && '--resource-group',
    !a?.vmSize && '--vm-size',
    !a?.osDiskType && '--os-disk-type',
    !a?.subnetId && '--subnet',
  ].filter(Boolean);
  if (!a || missing.length)
    throw new OperationError(`the azure target needs ${missing.join(', ')} (\`${fix} …\`)`, 'invalid');
  if (!/^[-\w._()]{1,90}$/.test(a.resourceGroup) || a.resourceGroup.endsWith('.'))
    throw new OperationError(`"${a.resourceGroup}" is not a resource group name`, 'invalid');
  if (!AZURE_DISK_TYPES.includes(a.osDiskType))
    throw new OperationError(
      `OS disk type must be one of ${AZURE_DISK_TYPES.join(', ')}, not ${a.osDiskType}`,
      'invalid',
    );
  for (const [flag, id] of [
    ['--subnet', a.subnetId],
    ['--drill-subnet', a.drillSubnetId],
  ] as const)
    if (id !== undefined && !SUBNET_ID.test(id))
      throw new OperationError(
        `${flag} must be a subnet resource id (/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>), not ${id}`,
        'invalid',
      );
  if (
    a.drillSubnetId &&
    a.drillSubnetId.toLowerCase() === a.subnetId.toLowerCase() &&
    !a.drillOnProductionSubnet
  )
    throw new OperationError(
      `the drill subnet of ${machine} is its production subnet: drills must be isolated; give another --drill-subnet, or say --drill-on-production-subnet`,
      'invalid',
    );
  if (a.privateIp !== undefined && !/^\d{1,3}(\.\d{1,3}){3}$/.test(a.privateIp))
    throw new OperationError(`--private-ip must be an IPv4 address, not ${a.privateIp}`, 'invalid');
}

/**
 * The recovery host must be a libvirt host on the cloud applier's own machine: the domain opens the
 * images the applier materializes there (a remote qemu+ssh:// host would not see them).
 */
async function recoveryHostProblem(ctx: ControlContext, machine: string, name: string) {
  const host = await getHost(ctx, name);
  if (host.kind !== 'libvirt')
    throw new OperationError(
      `host ${name} is a ${host.kind} host, not libvirt: --recovery-host takes a libvirt host (\`osr host add <name> --libvirt qemu:///system\` on the recovery site's cloud-applier host), then \`osr failover configure ${machine} --target libvirt --recovery-host <name>\``,
      'invalid',
    );
  if (!/^qemu(\+unix)?:\/\/\//.test(host.uri))
    throw new OperationError(
      `libvirt host ${name} (${host.uri}) is remote: the libvirt target defines the domain beside the images the cloud applier materializes, so the recovery host must be local to it (qemu:///system, or qemu+unix:///…); add that libvirt as a host and give it with --recovery-host`,
      'invalid',
    );
  return host;
}

/** The domain definition kept at protect, or an error saying why there is none and what to do. */
async function keptDomainOf(ctx: ControlContext, machine: string): Promise<KeptDomain> {
  const kept = (await ctx.vault.read<KeptDomain>(keptDomainDoc(machine)))?.value;
  if (!kept && (await ctx.vault.machine(machine))?.source.type === 'agent')
    throw new OperationError(
      `${machine} is protected through its Mobility agent: OSR keeps no VM definition of it (it may be a physical server or another hypervisor's VM), so it cannot be defined in libvirt. Use --target local --materialize qcow2 with --boot-command that starts a VM on the recovered disks (OSR_RECOVERED_NBD) and a --probe (docs/operations.md, "Drills and failover of an agent machine")`,
      'invalid',
    );
  if (!kept)
    throw new OperationError(
      `the vault keeps no libvirt domain definition of ${machine}: only a libvirt domain protected with \`osr protect ${machine} --host <host> --domain <domain>\` (by this release or later) can be recovered into libvirt; protect it so, or use --target local`,
      'invalid',
    );
  return kept;
}

/** A libvirt recovery's settings with the recovery host's URI, refused now (with the fix) when it could not run. */
async function libvirtToStart(ctx: ControlContext, machine: string, settings: RecoverySettings) {
  const recoveryHost = settings.libvirt?.recoveryHost;
  if (!recoveryHost)
    throw new OperationError(
      `${machine} has target libvirt but no recovery host: \`osr failover configure ${machine} --target libvirt --recovery-host <host>\`. Nothing was started.`,
      'invalid',
    );
  const host = await recoveryHostProblem(ctx, machine, recoveryHost);
  await keptDomainOf(ctx, machine);
  return { ...settings, libvirt: { ...settings.libvirt!, uri: host.uri } };
}
