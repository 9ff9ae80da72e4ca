// What an operation of the control plane (CLI, HTTP API) needs: configuration, the vault (through
// the control role's storage), and a Temporal client opened on first use.
import type { Client } from '@temporalio/client';
import type { OsrConfig } from '../lib/config/config';
import { createBlobServiceClient, type BlobStorage } from '../lib/azure/blob-client';
import { openRoleStorage } from '../lib/azure/role-storage';
import { connectClient } from './temporal-client';
import { Vault } from '../lib/azure/vault';

export class ControlContext {
  readonly blobService: BlobStorage;
  readonly vault: Vault;
  #client: Promise<Client> | undefined;

  constructor(readonly config: OsrConfig) {
    // The account key opens every container, so under key the control plane keeps the account
    // view; under sas and entra it has only the control role's containers.
    this.blobService =
      config.storage.auth === 'key' ? createBlobServiceClient(config) : openRoleStorage(config, 'control');
    this.vault = new Vault(this.blobService);
  }

  client(): Promise<Client> {
    this.#client ??= connectClient(this.config);
    return this.#client;
  }

  async close(): Promise<void> {
    if (this.#client) await (await this.#client).connection.close();
  }
}

export { OperationError } from '../shared/operation-error';

/**
 * A job's description where operators look: the Temporal Web UI's summary (staticSummary) and the
 * memo that OSR's own listings read.
 */
export function jobSummary(summary: string): { memo: { summary: string }; staticSummary: string } {
  return { memo: { summary }, staticSummary: summary };
}
