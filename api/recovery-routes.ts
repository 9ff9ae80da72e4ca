// Routes of a machine's recovery settings: the recovery target (local; azure with its resource
// group, VM size, disk type, subnets, IP; libvirt with its recovery host and networks) and the platform recorded at protect (OS type, Hyper-V
// generation). Thin mappings onto the operations the CLI uses.
import { configureRecovery, getRecoverySettings, type RecoveryChange } from '../operations/recovery-settings';
import { setPlatform } from '../operations/machine-platform';
import { registeredMachine } from '../operations/machines';
import { AZURE_DISK_TYPES } from '../shared/recovery-types';
import { DEFAULT_PLATFORM } from '../shared/replication-types';
import { onlyFields, optionalBoolean, optionalEnum, optionalString, type JsonObject } from './body';
import { ApiError } from './errors';
import type { Route } from './router';

const AZURE_FIELDS = [
  'resourceGroup',
  'location',
  'vmSize',
  'osDiskType',
  'subnetId',
  'drillSubnetId',
  'drillOnProductionSubnet',
  'privateIp',
  'sourceNetwork',
] as const;

function objectField(body: JsonObject, field: string): JsonObject | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value))
    throw new ApiError(400, `field "${field}": must be an object`, 'invalid');
  return value as JsonObject;
}

/** The azure fields of a body: a string sets one, null removes it. */
function azureChange(a: JsonObject): RecoveryChange['azure'] {
  onlyFields(a, [...AZURE_FIELDS]);
  const text = (f: string) =>
    a[f] === null ? null : optionalString(a, f, 'a non-empty string, or null to remove it');
  return {
    resourceGroup: text('resourceGroup'),
    location: text('location'),
    vmSize: text('vmSize'),
    osDiskType: optionalEnum(a, 'osDiskType', AZURE_DISK_TYPES),
    subnetId: text('subnetId'),
    drillSubnetId: text('drillSubnetId'),
    drillOnProductionSubnet:
      a.drillOnProductionSubnet === null ? null : optionalBoolean(a, 'drillOnProductionSubnet'),
    privateIp: text('privateIp'),
    sourceNetwork: text('sourceNetwork'),
  };
}

/** The libvirt fields of a body: a value sets one, null removes it. */
function libvirtChange(l: JsonObject): RecoveryChange['libvirt'] {
  onlyFields(l, ['recoveryHost', 'drillNetwork', 'networks', 'consolePattern', 'bootTimeoutSeconds']);
  const text = (f: string) =>
    l[f] === null ? null : optionalString(l, f, 'a non-empty string, or null to remove it');
  const networks = l.networks === null ? null : objectField(l, 'networks');
  for (const [k, v] of Object.entries(networks ?? {}))
    if (typeof v !== 'string' || !v)
      throw new ApiError(400, `field "networks.${k}": must be the name of a libvirt network`, 'invalid');
  const timeout = l.bootTimeoutSeconds;
  if (timeout !== undefined && timeout !== null && !(typeof timeout === 'number' && timeout > 0))
    throw new ApiError(400, 'field "bootTimeoutSeconds": must be a positive number of seconds', 'invalid');
  return {
    recoveryHost: text('recoveryHost'),
    drillNetwork: text('drillNetwork'),
    consolePattern: text('consolePattern'),
    networks: networks as Record<string, string> | null | undefined,
    bootTimeoutSeconds: timeout as number | null | undefined,
  };
}

export const recoveryRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/machines/{name}/recovery-settings',
    handler: async (req) => {
      const machine = await registeredMachine(req.ctx, req.params.name as string);
      const settings = await getRecoverySettings(req.ctx, machine.name);
      return { status: 200, body: { ...settings, platform: machine.platform ?? DEFAULT_PLATFORM } };
    },
  },
  {
    method: 'POST',
    path: '/v1/machines/{name}/recovery-settings',
    handler: async (req) => {
      const name = (await registeredMachine(req.ctx, req.params.name as string)).name;
      const body = await req.body();
      onlyFields(body, ['target', 'azure', 'libvirt', 'platform']);
      const target = optionalEnum(body, 'target', ['local', 'azure', 'libvirt'] as const);
      const azure = objectField(body, 'azure');
      const libvirt = objectField(body, 'libvirt');
      const platform = objectField(body, 'platform');
      if (platform) {
        onlyFields(platform, ['osType', 'hyperVGeneration']);
        await setPlatform(req.ctx, name, {
          osType: optionalEnum(platform, 'osType', ['Linux', 'Windows'] as const),
          hyperVGeneration: optionalEnum(platform, 'hyperVGeneration', ['V1', 'V2'] as const),
        });
      }
      const settings = await configureRecovery(req.ctx, name, {
        target,
        azure: azure ? azureChange(azure) : undefined,
        libvirt: libvirt ? libvirtChange(libvirt) : undefined,
      });
      const machine = await registeredMachine(req.ctx, name);
      return { status: 200, body: { ...settings, platform: machine.platform ?? DEFAULT_PLATFORM } };
    },
  },
];
