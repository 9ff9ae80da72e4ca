// The one BlobServiceClient of a process: a real Azure storage account through its connection
// string, or the embedded Azurite on loopback.
import { BlobServiceClient, StorageRetryPolicyType } from '@azure/storage-blob';
import type { Pipeline } from '@azure/core-rest-pipeline';
import type { OsrConfig } from '../config/config';
import { storageTryPolicy } from './storage-health';

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
  // Throttling (503/500), time-outs and network errors are retried by the SDK with exponential
  // backoff; storageTryPolicy bounds each try and counts what the endpoint did (shared/storage-health.ts).
  const tryTimeoutMs = config.storage.tryTimeoutSeconds * 1000;
  const client = BlobServiceClient.fromConnectionString(storageConnectionString(config), {
    retryOptions: {
      retryPolicyType: StorageRetryPolicyType.EXPONENTIAL,
      maxTries: config.storage.maxTries,
      retryDelayInMs: 200,
      maxRetryDelayInMs: 10_000,
    },
  });
  // Every client made from this one (containers, blobs) shares this core pipeline.
  const core = (client as unknown as { storageClientContext?: { pipeline?: Pipeline } }).storageClientContext
    ?.pipeline;
  core?.addPolicy(storageTryPolicy(tryTimeoutMs), { afterPhase: 'Retry' });
  return client;
}

/** Creates the product's containers if missing; safe to call at every start. */
export async function ensureContainers(client: BlobServiceClient): Promise<void> {
  for (const name of Object.values(CONTAINERS)) {
    await client.getContainerClient(name).createIfNotExists();
  }
}

/**
 * A clear message when storage refused this process's credentials (HTTP 403
 * AuthenticationFailed on Azure, AuthorizationFailure on Azurite): a wrong or rotated account
 * key or SAS in storage.connectionString. Undefined for any other error.
 */
export function storageCredentialProblem(err: unknown): string | undefined {
  const e = err as { name?: string; statusCode?: number; code?: string; request?: { url?: string } };
  if (e?.name !== 'RestError' || e.statusCode !== 403) return undefined;
  if (!['AuthenticationFailed', 'AuthorizationFailure', 'InvalidAuthenticationInfo'].includes(e.code ?? ''))
    return undefined;
  let where = 'the storage account';
  try {
    const url = new URL(e.request?.url ?? '');
    // Azure: <account>.blob.core.windows.net; Azurite and other emulators: the first path segment.
    const account = url.hostname.includes('.blob.') ? url.hostname.split('.')[0] : url.pathname.split('/')[1];
    where = `storage account ${account} at ${url.origin}`;
  } catch {
    // no URL: keep the generic wording
  }
  return (
    `${where} refused OSR's credentials (HTTP 403 ${e.code}): the AccountKey or SAS in ` +
    'storage.connectionString is wrong or was rotated. Fix: copy a current connection string ' +
    '(Azure portal: the storage account, Access keys) into OSR_STORAGE_CONNECTION_STRING or ' +
    'storage.connectionString in osr.config.json, or unset it to use the embedded Azurite'
  );
}
