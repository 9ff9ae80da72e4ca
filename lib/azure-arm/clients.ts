// The two ARM clients OSR uses (compute: disks and VMs; network: NICs), built once per worker from
// the azure configuration: endpoint, credential, and the CA trusted for that endpoint when it is
// not a public one (a stand-in's self-signed certificate). TLS is never switched off: the ARM SDK
// refuses bearer tokens over plain HTTP, and a stand-in is trusted by its CA file only.
import fs from 'node:fs';
import type { TokenCredential } from '@azure/core-auth';
import { ComputeManagementClient } from '@azure/arm-compute';
import { NetworkManagementClient } from '@azure/arm-network';
import type { OsrConfig } from '../config/config';
import { armCredential } from './credential';

export interface ArmClients {
  subscriptionId: string;
  compute: ComputeManagementClient;
  network: NetworkManagementClient;
  /** How often a long-running operation is polled when ARM gives no Retry-After. */
  pollMs: number;
}

/** Why the azure target cannot be used with this configuration, or undefined. */
export function armConfigProblem(azure: OsrConfig['azure']): string | undefined {
  if (!azure.subscriptionId)
    return 'the azure recovery target needs azure.subscriptionId (OSR_AZURE_SUBSCRIPTION_ID) in the configuration of the cloud-applier worker';
  if (!azure.storageAccountId)
    return 'the azure recovery target needs azure.storageAccountId (OSR_AZURE_STORAGE_ACCOUNT_ID): the resource id of the storage account holding osr-failover, which disks are imported from';
  return undefined;
}

export function createArmClients(azure: OsrConfig['azure'], credential?: TokenCredential): ArmClients {
  const problem = armConfigProblem(azure);
  if (problem) throw new Error(problem);
  const subscriptionId = azure.subscriptionId as string;
  const endpoint = azure.armEndpoint.replace(/\/+$/, '');
  const cred = credential ?? armCredential(azure);
  const tlsOptions = azure.caFile ? { ca: fs.readFileSync(azure.caFile, 'utf8') } : undefined;
  return {
    subscriptionId,
    compute: new ComputeManagementClient(cred, subscriptionId, { endpoint, tlsOptions }),
    // The network client builds its URLs from $host, its token scope from endpoint.
    network: new NetworkManagementClient(cred, subscriptionId, {
      endpoint,
      $host: endpoint,
      credentialScopes: 'https://management.azure.com/.default',
      tlsOptions,
    }),
    pollMs: Math.round(azure.pollIntervalSeconds * 1000),
  };
}
