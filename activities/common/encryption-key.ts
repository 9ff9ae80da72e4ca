// The segment encryption key of this process, from the configuration: a base64 value, a key
// file, or (embedded default) .osr/keys/osr.key, created with mode 0600 at first use.
import type { OsrConfig } from '../../lib/config/config';
import { statePaths } from '../../lib/config/state-paths';
import { keyFromBase64, loadKeyFile, type EncryptionKey } from '../../lib/segments/keys';

export async function loadEncryptionKey(config: OsrConfig): Promise<EncryptionKey> {
  if (config.encryption.key)
    return keyFromBase64(config.encryption.key, 'OSR_ENCRYPTION_KEY / encryption.key');
  if (config.encryption.keyFile) return loadKeyFile(config.encryption.keyFile);
  return loadKeyFile(statePaths(config).defaultKeyFile, { create: true });
}
