// What activities of one worker process share: its configuration, its logger and its one blob
// client. Built once per process and handed to each role's createActivities factory.
import type { BlobServiceClient } from '@azure/storage-blob';
import type { OsrConfig } from '../shared/config';
import type { Logger } from '../shared/logger';
import { createBlobServiceClient } from '../shared/storage';

export interface WorkerDeps {
  config: OsrConfig;
  log: Logger;
  blobService: BlobServiceClient;
}

export function createWorkerDeps(config: OsrConfig, log: Logger): WorkerDeps {
  return { config, log, blobService: createBlobServiceClient(config) };
}
