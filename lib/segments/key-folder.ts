// The keys of one host on disk: the current key file (new segments are encrypted with it) and,
// beside it, retired/<id>.key for every key rotated out (segments still in the cache may need
// them). Rotation never loses a key: the old one is linked into retired/ before the new one
// replaces the current file, and a crash at any step leaves both keys on disk.
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';
import type { EncryptionKey } from './keys';
import { createKeyFile, KeyError, Keyring, loadKeyFile } from './keys';

export interface KeyFolder {
  /** The key new segments use; undefined when the current key file does not exist. */
  current: EncryptionKey | undefined;
  /** Every key found: the current one and the retired ones. */
  keyring: Keyring;
  /** Where each key id was read from, and when that file was made. */
  files: Map<string, { file: string; createdAt: Date }>;
}

export function retiredKeyDir(keyFile: string): string {
  return path.join(path.dirname(keyFile), 'retired');
}

export function retiredKeyFile(keyFile: string, id: string): string {
  return path.join(retiredKeyDir(keyFile), `${id}.key`);
}

/** Reads the current key file (if present) and every retired key beside it. */
export async function readKeyFolder(keyFile: string): Promise<KeyFolder> {
  const folder: KeyFolder = { current: undefined, keyring: new Keyring(), files: new Map() };
  const add = async (file: string): Promise<EncryptionKey> => {
    const key = await loadKeyFile(file);
    folder.keyring.add(key);
    // A key file is written once and never changed: its modification time is its creation time.
    if (!folder.files.has(key.id)) folder.files.set(key.id, { file, createdAt: (await fs.stat(file)).mtime });
    return key;
  };
  if (await exists(keyFile)) folder.current = await add(keyFile);
  for (const name of (await fs.readdir(retiredKeyDir(keyFile)).catch(() => [] as string[])).sort()) {
    if (!name.endsWith('.key')) continue;
    const file = path.join(retiredKeyDir(keyFile), name);
    const key = await add(file);
    if (`${key.id}.key` !== name) {
      throw new KeyError(
        'id-collision',
        `retired key file ${file} holds key ${key.id}; rename it to ${key.id}.key`,
      );
    }
  }
  return folder;
}

/**
 * Makes a new current key: the old one goes to retired/<id>.key first (hard link: same bytes,
 * same creation time), then a completely written new file replaces the current one by rename.
 */
export async function rotateKeyFile(
  keyFile: string,
): Promise<{ previous: EncryptionKey; current: EncryptionKey }> {
  const previous = await loadKeyFile(keyFile);
  const dir = retiredKeyDir(keyFile);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const retired = retiredKeyFile(keyFile, previous.id);
  await fs.link(keyFile, retired).catch(async (err: unknown) => {
    // Retired before (a rotation that crashed after this step): keep it if it is the same key.
    if (!(err instanceof Error && 'code' in err && err.code === 'EEXIST')) throw err;
    if (!(await loadKeyFile(retired)).equals(previous)) {
      throw new KeyError('id-collision', `${retired} exists and holds another key; move it away and retry`);
    }
  });
  await syncDirectory(dir);
  // A fresh name for the new key: createKeyFile never overwrites, and rename replaces atomically.
  const next = path.join(
    path.dirname(keyFile),
    `.${path.basename(keyFile)}.${randomBytes(6).toString('hex')}.new`,
  );
  const current = await createKeyFile(next);
  try {
    await fs.rename(next, keyFile);
  } catch (err) {
    await fs.unlink(next).catch(() => undefined);
    throw err;
  }
  await syncDirectory(path.dirname(keyFile));
  return { previous, current };
}

/** Changes whenever a key is added, rotated or removed: what a running worker polls for. */
export async function keyFolderSignature(keyFile: string): Promise<string> {
  const stat = await fs.stat(keyFile).catch(() => undefined);
  const retired = await fs.readdir(retiredKeyDir(keyFile)).catch(() => [] as string[]);
  return `${stat ? `${stat.ino}:${stat.mtimeMs}:${stat.size}` : 'missing'}|${retired.sort().join(',')}`;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file, fsConstants.F_OK).then(
    () => true,
    () => false,
  );
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, fsConstants.O_RDONLY).catch(() => undefined);
  if (handle === undefined) return;
  await handle.sync().catch(() => undefined);
  await handle.close();
}
