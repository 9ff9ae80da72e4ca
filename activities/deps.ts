// What activities of one worker process share: its configuration, its logger, its one blob
// client and (for the data-path roles) its one block pipeline. Built once per process and handed
// to each role's createActivities factory.
import type { BlobServiceClient } from '@azure/storage-blob';
import type { OsrConfig } from '../lib/config/config';
import type { Logger } from '../lib/config/logger';
import { createBlobServiceClient, ensureContainers } from '../lib/azure/blob-client';
import { Vault } from '../lib/azure/vault';
import { loadEncryptionKey } from './common/encryption-key';
import { BlockPipeline } from '../lib/segments/block-pipeline';

export interface WorkerDeps {
  config: OsrConfig;
  log: Logger;
  blobService: BlobServiceClient;
  vault: Vault;
}

export interface DataPathDeps extends WorkerDeps {
  pipeline: BlockPipeline;
}

export function createWorkerDeps(config: OsrConfig, log: Logger): WorkerDeps {
  const blobService = createBlobServiceClient(config);
  return { config, log, blobService, vault: new Vault(blobService) };
}

export async function createDataPathDeps(config: OsrConfig, log: Logger): Promise<DataPathDeps> {
  const key = await loadEncryptionKey(config);
  const pipeline = new BlockPipeline({
    threads: config.pipeline.threads,
    maxBytesInFlight: config.pipeline.maxBytesInFlight,
    key,
    onWorkerError: (err) => log.error({ err: err.message }, 'pipeline thread failed'),
  });
  const deps = { ...createWorkerDeps(config, log), pipeline };
  await ensureContainers(deps.blobService);
  return deps;
}
