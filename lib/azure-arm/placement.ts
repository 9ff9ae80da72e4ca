// Where one recovery lands in Azure, from the machine's azure settings, the worker's azure
// configuration (defaults) and what protect recorded (OS type, Hyper-V generation). A drill goes to
// the isolated drill subnet, never the production one unless the settings say so.
import type { OsrConfig } from '../config/config';
import type { AzurePlacement, AzureTargetSettings, RecoveryKind } from '../../shared/recovery-types';
import { DEFAULT_PLATFORM, type MachinePlatform } from '../../shared/replication-types';

export class PlacementError extends Error {
  override name = 'PlacementError';
}

export function resolvePlacement(
  config: OsrConfig['azure'],
  machine: string,
  settings: AzureTargetSettings | undefined,
  platform: MachinePlatform | undefined,
  kind: RecoveryKind,
): AzurePlacement {
  const fix = `set it with \`osr failover configure ${machine} --target azure …\``;
  if (!settings) throw new PlacementError(`machine ${machine} has no azure target settings: ${fix}`);
  const location = settings.location ?? config.location;
  if (!location)
    throw new PlacementError(
      `no Azure region for ${machine}: set azure.location in the configuration, or --location in \`osr failover configure ${machine}\``,
    );
  let subnetId = settings.subnetId;
  if (kind === 'drill') {
    const isolated = settings.drillSubnetId ?? config.drillSubnetId;
    if (isolated) subnetId = isolated;
    else if (!settings.drillOnProductionSubnet)
      throw new PlacementError(
        `a drill of ${machine} needs an isolated subnet and none is set: set azure.drillSubnetId in the configuration or --drill-subnet in \`osr failover configure ${machine}\` (a drill never lands on the production subnet unless --drill-on-production-subnet says so)`,
      );
  }
  return {
    resourceGroup: settings.resourceGroup,
    location,
    vmSize: settings.vmSize,
    osDiskType: settings.osDiskType,
    subnetId,
    // A drill never takes the production address.
    privateIp: kind === 'failover' ? settings.privateIp : undefined,
    ...(platform ?? DEFAULT_PLATFORM),
  };
}
