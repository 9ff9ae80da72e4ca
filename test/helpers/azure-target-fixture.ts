// The azure target's test setup: the ARM stand-in, and a testbed whose workers (and the test's own
// configuration) point at it, trusting its certificate by file and reading its token from a file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startArmStandin, type ArmStandin } from './arm-standin';
import type { StoredResource } from './arm-standin-resources';
import { startTestbed, type Testbed } from './testbed';

export const RG = 'osr-recovery-rg';
export const PROD_SUBNET = (sub: string) =>
  `/subscriptions/${sub}/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/prod-vnet/subnets/apps`;
export const DRILL_SUBNET = (sub: string) =>
  `/subscriptions/${sub}/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/drill-vnet/subnets/isolated`;
export const STORAGE_ACCOUNT_ID = (sub: string) =>
  `/subscriptions/${sub}/resourceGroups/storage-rg/providers/Microsoft.Storage/storageAccounts/osrrecovery`;

export interface AzureBed extends Testbed {
  arm: ArmStandin;
}

export async function startAzureBed(): Promise<AzureBed> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-arm-'));
  const arm = await startArmStandin({ dir, resourceGroups: [RG] });
  try {
    const bed = await startTestbed({
      extraEnv: {
        OSR_AZURE_SUBSCRIPTION_ID: arm.subscriptionId,
        OSR_AZURE_ARM_ENDPOINT: arm.url,
        OSR_AZURE_CA_FILE: arm.caFile,
        OSR_AZURE_TOKEN_FILE: arm.tokenFile,
        OSR_AZURE_STORAGE_ACCOUNT_ID: STORAGE_ACCOUNT_ID(arm.subscriptionId),
        OSR_AZURE_LOCATION: 'westeurope',
        OSR_AZURE_POLL_INTERVAL_SECONDS: '0.2',
      },
    });
    return {
      ...bed,
      arm,
      async stop() {
        await bed.stop();
        await arm.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await arm.stop();
    throw err;
  }
}

/** The stand-in's resources of one recovery job, by their tags. */
export function resourcesOfJob(arm: ArmStandin, job: string): StoredResource[] {
  return arm.store.list().filter((r) => r.tags['osr-job'] === job);
}
