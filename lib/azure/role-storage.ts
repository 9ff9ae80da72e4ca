// The one place a process reaches blob storage: a RoleStorage hands out only the containers its
// role is given (lib/config/storage-roles.ts), signed in the configured way (storage.auth):
//   key   — the account key (storage.connectionString) or the embedded Azurite, as before;
//   sas   — one container SAS URL per container, given per role (storage.sas.<role>.<container>);
//   entra — Microsoft Entra ID through DefaultAzureCredential (managed identity, workload
//           identity, service principal) against storage.accountUrl.
// Under sas and entra the containers are the operator's: a grant scoped to a container cannot
// create one, so OSR never tries; startCheck proves each exists and answers before a worker polls.
import type { TokenCredential } from '@azure/core-auth';
import type { BlobServiceClient } from '@azure/storage-blob';
import {
  AnonymousCredential,
  ContainerClient,
  RestError,
  type ContainerCreateIfNotExistsResponse,
} from '@azure/storage-blob';
import type { Pipeline } from '@azure/core-rest-pipeline';
import type { OsrConfig } from '../config/config';
import { ROLE_GRANTS, type ContainerKey, type StorageRole } from '../config/storage-roles';
import {
  CONTAINERS,
  createBlobServiceClient,
  storagePipelineOptions,
  withStoragePolicies,
  type BlobStorage,
} from './blob-client';
import { checkContainerSas, StorageSignInError } from './sas-check';
import { LazyDefaultAzureCredential } from './default-credential';
import { redactStorageSecrets } from './storage-secrets';

/** A refused request keeps the service's own words beside the explained message. */
type RefusedError = RestError & { serviceMessage?: string };

/** A container OSR does not create (sas, entra): "create if missing" becomes "must exist". */
class GrantedContainer extends ContainerClient {
  override async createIfNotExists(): Promise<ContainerCreateIfNotExistsResponse> {
    await this.listBlobsFlat().byPage({ maxPageSize: 1 }).next();
    return { succeeded: false } as ContainerCreateIfNotExistsResponse;
  }
}

export class RoleStorage implements BlobStorage {
  constructor(
    readonly role: StorageRole,
    readonly auth: OsrConfig['storage']['auth'],
    private readonly containers: ReadonlyMap<string, ContainerClient>,
    /** The whole account: only with the account key (auth key), for creating the containers. */
    readonly account?: BlobServiceClient,
  ) {}

  getContainerClient(name: string): ContainerClient {
    const client = this.containers.get(name);
    if (!client)
      throw new Error(
        `the ${this.role} role is not given storage container ${name} (it has ${[...this.containers.keys()].join(', ')}); ` +
          'what each role may use is in lib/config/storage-roles.ts',
      );
    return client;
  }

  /**
   * Before a worker polls (sas, entra): each container of the role answers a one-item listing, so
   * a wrong signature, an expired SAS, a missing role assignment or container, or a failed
   * Entra ID sign-in stops the worker with the reason instead of failing its first activity.
   */
  async startCheck(): Promise<void> {
    if (this.auth === 'key') return;
    for (const [name, client] of this.containers) {
      try {
        await client.listBlobsFlat().byPage({ maxPageSize: 1 }).next();
      } catch (err) {
        throw new StorageSignInError(this.#explain(err, name));
      }
    }
  }

  #explain(err: unknown, container: string): string {
    const role = this.role;
    const said =
      (err as RefusedError).serviceMessage ??
      redactStorageSecrets(((err as Error)?.message ?? String(err)).split('\n')[0] ?? '');
    if (err instanceof RestError) {
      const code = err.code ?? String(err.statusCode);
      if (err.statusCode === 404)
        return (
          `${role} role: storage container ${container} does not exist (${code}). With storage.auth ` +
          `"${this.auth}" OSR does not create containers. Fix: create it (az storage container create ` +
          `--name ${container} --account-name <account> --auth-mode login)`
        );
      if (err.statusCode === 403 && this.auth === 'sas')
        return (
          `${role} role: storage refused the SAS for container ${container} (HTTP 403 ${code}: ${said}): ` +
          'its signature does not match the account key (made with another key, or the key was rotated since) ' +
          'or it is outside its validity time. Fix: issue a new container SAS from a current key'
        );
      if (err.statusCode === 403)
        return (
          `${role} role: storage refused the Entra ID identity on container ${container} (HTTP 403 ${code}: ${said}). ` +
          `Fix: assign the identity the data role for ${role} on that container (docs/configuration.md, Storage sign-in)`
        );
      return `${role} role: storage container ${container} did not answer the sign-in check (HTTP ${err.statusCode} ${code}: ${said})`;
    }
    const name = (err as Error)?.name ?? '';
    if (/AuthenticationError|CredentialUnavailableError/.test(name))
      return (
        `${role} role: sign-in to storage through Microsoft Entra ID failed (DefaultAzureCredential): ${redactStorageSecrets((err as Error).message)}. ` +
        'Fix: give this process an identity the chain can use: a managed identity (and AZURE_CLIENT_ID for a ' +
        'user-assigned one), workload identity (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE) or a ' +
        'service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)'
      );
    return `${role} role: storage container ${container} did not answer the sign-in check: ${said}`;
  }
}

function grantedKeys(role: StorageRole): [ContainerKey, string][] {
  return Object.entries(ROLE_GRANTS[role]) as [ContainerKey, string][];
}

/**
 * A request storage refuses (HTTP 403) says which role, container and setting to look at: the
 * service's own message is empty for a HEAD and never names them.
 */
function explainRefusals(
  client: ContainerClient,
  role: StorageRole,
  auth: 'sas' | 'entra',
  container: string,
): ContainerClient {
  const core = (client as unknown as { storageClientContext?: { pipeline?: Pipeline } }).storageClientContext
    ?.pipeline;
  const hint =
    auth === 'sas'
      ? `check the permissions (sp) and expiry of storage.sas.${role} for ${container}`
      : `assign the identity the data role for ${role} on ${container} (docs/configuration.md, Storage sign-in)`;
  core?.addPolicy({
    name: 'osrExplainRefusal',
    async sendRequest(request, next) {
      try {
        return await next(request);
      } catch (err) {
        if (err instanceof RestError && err.statusCode === 403) {
          const code =
            err.code ?? (err.details as { errorCode?: string } | undefined)?.errorCode ?? 'Forbidden';
          const said = redactStorageSecrets(err.message.split('\n')[0] ?? '');
          (err as RefusedError).serviceMessage = said;
          err.message = `${role} role: storage refused ${request.method} on container ${container} (HTTP 403 ${code}${said ? `: ${said}` : ''}); ${hint}`;
        }
        throw err;
      }
    },
  });
  return client;
}

let entraCredential: TokenCredential | undefined;

/** The role's storage as the configuration signs in; checks every SAS (no network) under sas. */
export function openRoleStorage(config: Pick<OsrConfig, 'storage'>, role: StorageRole): RoleStorage {
  const grants = grantedKeys(role);
  const containers = new Map<string, ContainerClient>();
  const { auth } = config.storage;
  if (auth === 'key') {
    const account = createBlobServiceClient(config);
    for (const [key] of grants) containers.set(CONTAINERS[key], account.getContainerClient(CONTAINERS[key]));
    return new RoleStorage(role, auth, containers, account);
  }
  const options = storagePipelineOptions(config);
  for (const [key, needs] of grants) {
    const name = CONTAINERS[key];
    let client: ContainerClient;
    if (auth === 'sas') {
      const sasUrl = config.storage.sas[role]?.[key];
      checkContainerSas({ role, key, container: name, needs, sasUrl });
      client = new GrantedContainer(sasUrl as string, new AnonymousCredential(), options);
    } else {
      entraCredential ??= new LazyDefaultAzureCredential();
      const base = (config.storage.accountUrl as string).replace(/\/+$/, '');
      client = new GrantedContainer(`${base}/${name}`, entraCredential, options);
    }
    containers.set(name, explainRefusals(withStoragePolicies(client, config), role, auth, name));
  }
  return new RoleStorage(role, auth, containers);
}
