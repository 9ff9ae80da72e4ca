// What activities of one worker process share: its configuration, its logger, its role's blob
// storage (only the containers the role is given, checked before the worker polls) and (for the
// data-path roles) its one block pipeline. Built once per process and handed to each role's
// createActivities factory.
import type { OsrConfig } from '../lib/config/config';
import type { Logger } from '../lib/config/logger';
import type { StorageRole } from '../lib/config/storage-roles';
import { ensureContainers, type BlobStorage } from '../lib/azure/blob-client';
import { openRoleStorage, type RoleStorage } from '../lib/azure/role-storage';
import { Vault } from '../lib/azure/vault';
import { loadEncryptionKey } from './common/encryption-key';
import { BlockPipeline } from '../lib/segments/block-pipeline';

export interface WorkerDeps {
  config: OsrConfig;
  log: Logger;
  /** The role's containers (lib/azure/role-storage.ts); a container it is not given throws. */
  blobService: BlobStorage;
  vault: Vault;
}

export interface DataPathDeps extends WorkerDeps {
  pipeline: BlockPipeline;
}

async function openCheckedStorage(config: OsrConfig, log: Logger, role: StorageRole): Promise<RoleStorage> {
  const storage = openRoleStorage(config, role);
  await storage.startCheck();
  if (storage.auth !== 'key') log.info({ auth: storage.auth }, `${role} storage sign-in checked`);
  return storage;
}

export async function createWorkerDeps(
  config: OsrConfig,
  log: Logger,
  role: StorageRole,
): Promise<WorkerDeps> {
  const storage = await openCheckedStorage(config, log, role);
  return { config, log, blobService: storage, vault: new Vault(storage) };
}

export async function createDataPathDeps(
  config: OsrConfig,
  log: Logger,
  role: StorageRole,
): Promise<DataPathDeps> {
  const storage = await openCheckedStorage(config, log, role);
  // The account key can create the containers; under sas and entra they are the operator's.
  if (storage.account) await ensureContainers(storage.account);
  const key = await loadEncryptionKey(config);
  const pipeline = new BlockPipeline({
    threads: config.pipeline.threads,
    maxBytesInFlight: config.pipeline.maxBytesInFlight,
    key,
    onWorkerError: (err) => log.error({ err: err.message }, 'pipeline thread failed'),
  });
  return { config, log, blobService: storage, vault: new Vault(storage), pipeline };
}
