// The one BlobServiceClient of a process: a real Azure storage account through its connection
// string, or the embedded Azurite on loopback.
import { BlobServiceClient, StorageRetryPolicyType } from '@azure/storage-blob';
import type { OsrConfig } from './config';

// Azurite's documented development account; public by design, useless outside loopback.
const AZURITE_ACCOUNT = 'devstoreaccount1';
const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export const CONTAINERS = {
  cache: 'osr-cache',
  replica: 'osr-replica',
  failover: 'osr-failover',
  vault: 'osr-vault',
} as const;

export function azuriteConnectionString(port: number): string {
  return `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=http://127.0.0.1:${port}/${AZURITE_ACCOUNT};`;
}

export function storageConnectionString(config: Pick<OsrConfig, 'storage'>): string {
  return config.storage.connectionString ?? azuriteConnectionString(config.storage.azuritePort);
}

export function isEmbeddedStorage(config: Pick<OsrConfig, 'storage'>): boolean {
  return config.storage.connectionString === undefined;
}

export function createBlobServiceClient(config: Pick<OsrConfig, 'storage'>): BlobServiceClient {
  return BlobServiceClient.fromConnectionString(storageConnectionString(config), {
    retryOptions: { retryPolicyType: StorageRetryPolicyType.EXPONENTIAL, maxTries: 5, retryDelayInMs: 200 },
  });
}

/** Creates the product's containers if missing; safe to call at every start. */
export async function ensureContainers(client: BlobServiceClient): Promise<void> {
  for (const name of Object.values(CONTAINERS)) {
    await client.getContainerClient(name).createIfNotExists();
  }
}
