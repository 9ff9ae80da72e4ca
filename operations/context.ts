// What an operation of the control plane (CLI, HTTP API) needs: configuration, the vault, and a
// Temporal client opened on first use.
import type { Client } from '@temporalio/client';
import type { BlobServiceClient } from '@azure/storage-blob';
import type { OsrConfig } from '../lib/config/config';
import { createBlobServiceClient } from '../lib/azure/blob-client';
import { connectClient } from './temporal-client';
import { Vault } from '../lib/azure/vault';

export class ControlContext {
  readonly blobService: BlobServiceClient;
  readonly vault: Vault;
  #client: Promise<Client> | undefined;

  constructor(readonly config: OsrConfig) {
    this.blobService = createBlobServiceClient(config);
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
