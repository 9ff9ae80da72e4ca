// The segment keys of this process, from the configuration: a base64 value, a key file, or
// (embedded default) .osr/keys/osr.key, created with mode 0600 at first use; plus the keys
// rotated out, in retired/ beside the key file. The vault records every key id, so a key file
// that went missing is refused at start, naming the file and the fix, instead of its segments
// being rejected later as corrupt.
import path from 'node:path';
import type { OsrConfig } from '../config/config';
import { statePaths } from '../config/state-paths';
import { registerKey, registeredKeys } from '../azure/key-registry';
import type { Vault } from '../azure/vault';
import { keyFolderSignature, readKeyFolder, retiredKeyFile } from './key-folder';
import { keyFromBase64, KeyError, Keyring, loadKeyFile, type EncryptionKey } from './keys';

export interface SegmentKeys {
  /** Encrypts new segments. */
  key: EncryptionKey;
  /** Decrypts: the current key and every retired one. */
  keyring: Keyring;
}

/** The current key only, without the vault's record (tests, tools). */
export async function loadEncryptionKey(config: OsrConfig): Promise<EncryptionKey> {
  if (config.encryption.key)
    return keyFromBase64(config.encryption.key, 'OSR_ENCRYPTION_KEY / encryption.key');
  if (config.encryption.keyFile) return loadKeyFile(config.encryption.keyFile);
  return loadKeyFile(statePaths(config).defaultKeyFile, { create: true });
}

/** Where this process keeps its key file (a base64 key from the environment still has retired/ there). */
export function keyFileOf(config: OsrConfig): string {
  return config.encryption.keyFile ?? statePaths(config).defaultKeyFile;
}

/**
 * Loads the current and retired keys and checks them against the vault's record: every recorded
 * key must be on this host. Records the current key the first time it is seen.
 */
export async function loadSegmentKeys(config: OsrConfig, vault: Vault): Promise<SegmentKeys> {
  const keyFile = keyFileOf(config);
  // A malformed key from the environment is named before any storage round trip.
  const given = config.encryption.key
    ? keyFromBase64(config.encryption.key, 'OSR_ENCRYPTION_KEY / encryption.key')
    : undefined;
  // The record first: a key recorded by another process was written to disk before it was recorded.
  const recorded = await registeredKeys(vault);
  const folder = await readKeyFolder(keyFile);
  for (const entry of recorded) {
    // A key given by value (OSR_ENCRYPTION_KEY) is on this host too, though not in the folder.
    if (folder.keyring.has(entry.id) || given?.id === entry.id) continue;
    const isCurrent = entry.retiredAt === undefined && !config.encryption.key;
    const file = isCurrent ? keyFile : retiredKeyFile(keyFile, entry.id);
    throw lostKeyError(file, entry.id, entry.createdAt);
  }
  let key: EncryptionKey;
  if (given) {
    key = given;
  } else if (folder.current) {
    key = folder.current;
  } else {
    // Nothing recorded and no file: a first start. Only the embedded default is created.
    key = await loadKeyFile(keyFile, { create: config.encryption.keyFile === undefined });
  }
  const keyring = new Keyring(folder.keyring).add(key);
  if (!recorded.some((r) => r.id === key.id)) {
    await registerKey(vault, key.id, folder.files.get(key.id)?.createdAt ?? new Date());
  }
  return { key, keyring };
}

function lostKeyError(file: string, id: string, createdAt: string): KeyError {
  return new KeyError(
    'not-found',
    `key file ${file} is missing: the vault records segment key ${id} (created ${createdAt}), and ` +
      `segments encrypted with it cannot be read without it. Restore ${file} from your backup of ` +
      `${path.dirname(file)} (keep one off the primary site, with your other secrets: ` +
      'docs/operations.md#segment-keys) and start again. Only if it is lost for good: ' +
      `\`osr keys forget ${id}\`, then resync the machines whose segments it encrypted`,
  );
}

export interface KeyWatcher {
  /** Reloads now (a segment named a key the pipeline lacks). */
  reload(): Promise<void>;
  stop(): void;
}

/**
 * Polls the key folder and hands changed keys to `apply` (BlockPipeline.setKeys), so a running
 * worker encrypts with a rotated key within `intervalMs` without a restart. A folder caught
 * mid-change, or a key lost meanwhile, keeps the keys in use and is reported through `onError`.
 */
export function watchSegmentKeys(
  config: OsrConfig,
  vault: Vault,
  apply: (keys: SegmentKeys) => void,
  onError: (err: Error) => void,
  intervalMs = 2000,
): KeyWatcher {
  const keyFile = keyFileOf(config);
  let last: Promise<string> = keyFolderSignature(keyFile);
  let running: Promise<void> | undefined;
  const reload = (force: boolean): Promise<void> => {
    running ??= (async () => {
      try {
        const signature = await keyFolderSignature(keyFile);
        if (!force && signature === (await last)) return;
        // Said once per change of the folder, not at every poll.
        last = Promise.resolve(signature);
        apply(await loadSegmentKeys(config, vault));
      } catch (err) {
        onError(err instanceof Error ? err : new Error(String(err)));
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  const timer = setInterval(() => void reload(false), intervalMs);
  timer.unref();
  return { reload: () => reload(true), stop: () => clearInterval(timer) };
}
