// Which segment keys exist, by id only (never key material, invariant 5), kept in the vault so
// that a host whose key file went missing finds out at start instead of reading the segments
// encrypted with it as corrupt later. keys/<id>.json: { id, createdAt, retiredAt? }.
import { vaultSegment } from '../../shared/names';
import type { Vault } from './vault';
import { VaultConflictError } from './vault';

export interface RegisteredKey {
  id: string;
  createdAt: string;
  /** Set when a rotation made another key current; the key still decrypts older segments. */
  retiredAt?: string;
}

const keyDoc = (id: string) => `keys/${vaultSegment('key id', id)}.json`;

export async function registeredKeys(vault: Vault): Promise<RegisteredKey[]> {
  const keys = await vault.list<RegisteredKey>('keys/');
  return keys.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
}

/** Records a key id once; recording it again (another worker, a restart) changes nothing. */
export async function registerKey(vault: Vault, id: string, createdAt: Date): Promise<void> {
  try {
    await vault.write(keyDoc(id), { id, createdAt: createdAt.toISOString() } satisfies RegisteredKey);
  } catch (err) {
    if (!(err instanceof VaultConflictError)) throw err;
  }
}

export async function markKeyRetired(vault: Vault, id: string, at: Date): Promise<void> {
  await vault.update<RegisteredKey>(keyDoc(id), (current) => ({
    id,
    createdAt: current?.createdAt ?? at.toISOString(),
    retiredAt: current?.retiredAt ?? at.toISOString(),
  }));
}

/** Drops a key's record: for a key lost for good, so that workers start without it. */
export async function forgetKey(vault: Vault, id: string): Promise<void> {
  await vault.remove(keyDoc(id));
}
