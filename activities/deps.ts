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
import { loadSegmentKeys, watchSegmentKeys } from './common/encryption-key';
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
  const vault = new Vault(storage);
  // A missing key file stops the worker here, naming the file and the fix.
  const { key, keyring } = await loadSegmentKeys(config, vault);
  // Rotated keys reach the running pipeline without a restart (see docs/operations.md#segment-keys).
  const watcher = watchSegmentKeys(
    config,
    vault,
    (keys) => {
      if (BlockPipeline.current !== pipeline) return;
      pipeline.setKeys(keys.key, keys.keyring);
      log.info({ encryptWith: keys.key.id, keys: keys.keyring.ids }, 'segment keys reloaded');
    },
    (err) => log.error({ err: err.message }, 'segment keys not reloaded; the keys in use stay'),
  );
  const pipeline = new BlockPipeline({
    threads: config.pipeline.threads,
    maxBytesInFlight: config.pipeline.maxBytesInFlight,
    key,
    keyring,
    onWorkerError: (err) => log.error({ err: err.message }, 'pipeline thread failed'),
    onUnknownKey: () => watcher.reload(),
  });
  log.info({ encryptWith: key.id, keys: keyring.ids }, 'segment keys loaded');
  return { config, log, blobService: storage, vault, pipeline };
}
