// The one BlobServiceClient of a process: a real Azure storage account through its connection
// string, or the embedded Azurite on loopback.
import fs from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import {
  BlobServiceClient,
  StorageRetryPolicyType,
  type ContainerClient,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import type { Pipeline } from '@azure/core-rest-pipeline';
import type { OsrConfig } from '../config/config';
import { storageTryPolicy } from './storage-health';

// Azurite's documented development account; public by design, useless outside loopback.
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export const CONTAINERS = {
  cache: 'osr-cache',
  replica: 'osr-replica',
  failover: 'osr-failover',
  vault: 'osr-vault',
} as const;

/** `host`: where Azurite is reached from (another namespace, a proxy, a relay). */
export function azuriteConnectionString(port: number, host = '127.0.0.1'): string {
  return `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=http://${host}:${port}/${AZURITE_ACCOUNT};`;
}

export function storageConnectionString(config: Pick<OsrConfig, 'storage'>): string {
  return config.storage.connectionString ?? azuriteConnectionString(config.storage.azuritePort);
}

/** The embedded Azurite serves storage: account key sign-in with no connection string. */
export function isEmbeddedStorage(config: Pick<OsrConfig, 'storage'>): boolean {
  return config.storage.auth === 'key' && config.storage.connectionString === undefined;
}

/**
 * What a process's code needs from storage: a container by name. A BlobServiceClient is one (the
 * whole account, account key); a RoleStorage (role-storage.ts) gives only its role's containers.
 */
export interface BlobStorage {
  getContainerClient(name: string): ContainerClient;
}

/** Retries of every blob client: throttling (503/500), time-outs and network errors, exponential backoff. */
export function storagePipelineOptions(config: Pick<OsrConfig, 'storage'>): StoragePipelineOptions {
  return {
    retryOptions: {
      retryPolicyType: StorageRetryPolicyType.EXPONENTIAL,
      maxTries: config.storage.maxTries,
      retryDelayInMs: 200,
      maxRetryDelayInMs: 10_000,
    },
  };
}

/**
 * Adds OSR's policies to a client's core pipeline (shared by every client made from it):
 * storageTryPolicy bounds each try and counts what the endpoint did (storage-health.ts), and a
 * configured storage.caFile is trusted besides the system's CAs.
 */
export function withStoragePolicies<T extends object>(client: T, config: Pick<OsrConfig, 'storage'>): T {
  const core = (client as unknown as { storageClientContext?: { pipeline?: Pipeline } }).storageClientContext
    ?.pipeline;
  core?.addPolicy(storageTryPolicy(config.storage.tryTimeoutSeconds * 1000), { afterPhase: 'Retry' });
  if (config.storage.caFile) {
    const agent = trustedAgent(config.storage.caFile);
    core?.addPolicy({
      name: 'osrTrustedCa',
      sendRequest: (request, next) => {
        request.agent ??= agent;
        return next(request);
      },
    });
  }
  return client;
}

const agents = new Map<string, https.Agent>();
function trustedAgent(caFile: string): https.Agent {
  let agent = agents.get(caFile);
  if (!agent) {
    let ca: string;
    try {
      ca = fs.readFileSync(caFile, 'utf8');
    } catch (err) {
      throw new Error(
        `storage.caFile ${caFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}). ` +
          'Fix: point storage.caFile (OSR_STORAGE_CA_FILE) at the PEM certificate of the CA that signed the storage endpoint, or unset it',
      );
    }
    agent = new https.Agent({ keepAlive: true, ca: [...tls.rootCertificates, ca] });
    agents.set(caFile, agent);
  }
  return agent;
}

/** The whole account through the account key (storage.connectionString) or the embedded Azurite. */
export function createBlobServiceClient(config: Pick<OsrConfig, 'storage'>): BlobServiceClient {
  return withStoragePolicies(
    BlobServiceClient.fromConnectionString(storageConnectionString(config), storagePipelineOptions(config)),
    config,
  );
}

/** Creates the product's containers if missing; safe to call at every start. */
export async function ensureContainers(client: BlobServiceClient): Promise<void> {
  for (const name of Object.values(CONTAINERS)) {
    await client.getContainerClient(name).createIfNotExists();
  }
}

/**
 * A clear message when storage refused this process's credentials (HTTP 403: AuthenticationFailed
 * on Azure, AuthorizationFailure on Azurite, AuthorizationPermissionMismatch for an Entra identity
 * without a data role), naming the credential that was used and how to fix it. The request tells
 * which one: a `sig` in its URL is a SAS, a Bearer token is Entra ID, anything else the account key.
 * Undefined for any other error.
 */
export function storageCredentialProblem(err: unknown): string | undefined {
  const e = err as {
    name?: string;
    statusCode?: number;
    code?: string;
    request?: { url?: string; headers?: { get(name: string): string | undefined } };
  };
  if (e?.name !== 'RestError' || e.statusCode !== 403) return undefined;
  if (!REFUSED_CREDENTIALS.includes(e.code ?? '')) return undefined;
  let where = 'the storage account';
  let sas = false;
  try {
    const url = new URL(e.request?.url ?? '');
    sas = url.searchParams.has('sig');
    // Azure: <account>.blob.core.windows.net; Azurite and other emulators: the first path segment.
    const account = url.hostname.includes('.blob.') ? url.hostname.split('.')[0] : url.pathname.split('/')[1];
    where = `storage account ${account} at ${url.origin}`;
  } catch {
    // no URL: keep the generic wording
  }
  const bearer = /^bearer /i.test(e.request?.headers?.get('authorization') ?? '');
  const refused = `${where} refused OSR's credentials (HTTP 403 ${e.code})`;
  if (sas)
    return (
      `${refused}: the SAS is wrong, expired, or lacks a permission this role needs. Fix: generate a ` +
      'container SAS with the permissions of the role (docs/configuration.md, Storage sign-in) and set it ' +
      'in storage.sas.<role>.<container> (OSR_STORAGE_SAS_<ROLE>_<CONTAINER>), or in ' +
      'storage.connectionString if it came from there'
    );
  if (bearer)
    return (
      `${refused}: the Microsoft Entra identity this worker signs in as has no data role on the ` +
      'container. Fix: assign it Storage Blob Data Contributor (or Reader, for control on osr-replica) ' +
      'on the containers of its role (docs/configuration.md, Storage sign-in)'
    );
  return (
    `${refused}: the AccountKey or SAS in storage.connectionString is wrong or was rotated. Fix: copy a ` +
    'current connection string (Azure portal: the storage account, Access keys) into ' +
    'OSR_STORAGE_CONNECTION_STRING or storage.connectionString in osr.config.json, or unset it to use ' +
    'the embedded Azurite'
  );
}

const REFUSED_CREDENTIALS = [
  'AuthenticationFailed',
  'AuthorizationFailure',
  'InvalidAuthenticationInfo',
  'AuthorizationPermissionMismatch',
];
