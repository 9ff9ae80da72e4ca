// The segment encryption key: 32 random bytes for AES-256-GCM, identified by a short id that is
// safe to write anywhere (segment headers, logs, the vault). The key material itself lives only
// inside a Node KeyObject, so no property of these objects can print it, and a KeyObject can be
// handed to worker threads through workerData without ever becoming a plain Buffer there.
import { createHash, createSecretKey, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';
import { inspect } from 'node:util';

export const KEY_BYTES = 32;
// 32 bytes in base64 are 43 significant characters plus one '=' of padding; url-safe alphabet too.
const BASE64_KEY = /^[A-Za-z0-9+/_-]{43}=?$/;
// A key file is tiny; refuse to read anything larger so a wrong path cannot make us load a disk.
const MAX_KEY_FILE_BYTES = 1024;
const CREATE_HINT = 'create one with `(umask 077; openssl rand -base64 32 > <file>)`';

export type KeyErrorCode =
  | 'bad-length'
  | 'bad-encoding'
  | 'not-found'
  | 'insecure-permissions'
  | 'already-exists'
  | 'id-collision'
  | 'io';

/** A key could not be loaded, created or added. The message names the problem and the fix, never key bytes. */
export class KeyError extends Error {
  override readonly name = 'KeyError';
  constructor(
    readonly code: KeyErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** An AES-256 key. Printing, inspecting or serialising it shows only its id. */
export class EncryptionKey {
  /** First 8 hex characters of SHA-256(key): identifies the key without revealing it. */
  readonly id: string;
  readonly #secret: KeyObject;

  private constructor(secret: KeyObject, id: string) {
    this.#secret = secret;
    this.id = id;
  }

  /** Wraps 32 key bytes (copied; the caller may wipe its buffer afterwards). */
  static fromBytes(bytes: Uint8Array, source = 'encryption key'): EncryptionKey {
    if (bytes.length !== KEY_BYTES) {
      throw new KeyError(
        'bad-length',
        `${source} has ${bytes.length} bytes; expected ${KEY_BYTES} random bytes, base64 or raw; ${CREATE_HINT}`,
      );
    }
    return new EncryptionKey(createSecretKey(Buffer.from(bytes)), keyIdOf(bytes));
  }

  /** Rebuilds a key from a KeyObject, e.g. one received by a worker thread through workerData. */
  static fromKeyObject(secret: KeyObject): EncryptionKey {
    if (secret.type !== 'secret' || secret.symmetricKeySize !== KEY_BYTES) {
      throw new KeyError('bad-length', `key object is not a ${KEY_BYTES}-byte secret key; ${CREATE_HINT}`);
    }
    const bytes = secret.export();
    try {
      return new EncryptionKey(secret, keyIdOf(bytes));
    } finally {
      bytes.fill(0);
    }
  }

  static generate(): EncryptionKey {
    const bytes = randomBytes(KEY_BYTES);
    try {
      return EncryptionKey.fromBytes(bytes);
    } finally {
      bytes.fill(0);
    }
  }

  /** For createCipheriv and for passing to worker threads; a KeyObject does not print its bytes either. */
  get keyObject(): KeyObject {
    return this.#secret;
  }

  equals(other: EncryptionKey): boolean {
    return this.#secret.equals(other.#secret);
  }

  toString(): string {
    return `EncryptionKey(${this.id})`;
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** The keys a reader may need: segments written under an old key stay readable after rotation. */
export class Keyring implements Iterable<EncryptionKey> {
  readonly #keys = new Map<string, EncryptionKey>();

  constructor(keys: Iterable<EncryptionKey> = []) {
    for (const key of keys) this.add(key);
  }

  /** Adds a key; adding the same key twice is harmless, two different keys with one id are refused. */
  add(key: EncryptionKey): this {
    const existing = this.#keys.get(key.id);
    if (existing !== undefined && !existing.equals(key)) {
      throw new KeyError(
        'id-collision',
        `two different keys share the id ${key.id}; generate a new key with \`openssl rand -base64 32\``,
      );
    }
    this.#keys.set(key.id, key);
    return this;
  }

  get(id: string): EncryptionKey | undefined {
    return this.#keys.get(id);
  }

  has(id: string): boolean {
    return this.#keys.has(id);
  }

  get ids(): string[] {
    return [...this.#keys.keys()];
  }

  get size(): number {
    return this.#keys.size;
  }

  [Symbol.iterator](): Iterator<EncryptionKey> {
    return this.#keys.values();
  }

  toString(): string {
    return `Keyring(${this.ids.join(', ')})`;
  }

  toJSON(): { ids: string[] } {
    return { ids: this.ids };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

export function keyIdOf(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 8);
}

/** Parses a key given as base64 text (standard or url-safe alphabet), e.g. from an environment variable. */
export function keyFromBase64(text: string, source = 'encryption key'): EncryptionKey {
  const trimmed = text.trim();
  if (!BASE64_KEY.test(trimmed)) {
    // Say how long it decodes to, which helps spot a wrong variable, without echoing any of it.
    const decoded = Buffer.from(trimmed, 'base64');
    const decodedLength = decoded.length;
    decoded.fill(0);
    throw new KeyError(
      decodedLength === KEY_BYTES ? 'bad-encoding' : 'bad-length',
      `${source} is not base64 of ${KEY_BYTES} bytes (${trimmed.length} characters, decoding to ` +
        `${decodedLength} bytes); expected ${KEY_BYTES} random bytes, base64 or raw; ${CREATE_HINT}`,
    );
  }
  const bytes = Buffer.from(trimmed, 'base64');
  try {
    return EncryptionKey.fromBytes(bytes, source);
  } finally {
    bytes.fill(0);
  }
}

export interface LoadKeyFileOptions {
  /** Create a new random key file (mode 0600) when none exists at the path. */
  create?: boolean;
  /**
   * Refuse a key file that group or others may access, as ssh does for private keys. Turn off
   * only where the platform cannot express it (e.g. some mounted secret volumes).
   */
  requirePrivate?: boolean;
}

/** Loads a key file holding 32 raw bytes or their base64 text, optionally creating it first. */
export async function loadKeyFile(file: string, options: LoadKeyFileOptions = {}): Promise<EncryptionKey> {
  const requirePrivate = options.requirePrivate ?? true;
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, fsConstants.O_RDONLY);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') {
      if (options.create === true) return createKeyFileOrLoadRacer(file, options);
      throw new KeyError('not-found', `key file ${file} does not exist; ${CREATE_HINT}`);
    }
    throw ioError(file, 'open', err);
  }
  try {
    // fstat on the open handle, not stat on the path, so the checks apply to the bytes we read.
    const stat = await handle.stat();
    if (!stat.isFile()) {
      throw new KeyError('bad-length', `key file ${file} is not a regular file; ${CREATE_HINT}`);
    }
    if (requirePrivate && process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new KeyError(
        'insecure-permissions',
        `key file ${file} has mode ${mode}, so group or others can access it; run \`chmod 600 ${file}\``,
      );
    }
    if (stat.size > MAX_KEY_FILE_BYTES) {
      throw new KeyError(
        'bad-length',
        `key file ${file} has ${stat.size} bytes; expected ${KEY_BYTES} random bytes, base64 or raw; ${CREATE_HINT}`,
      );
    }
    const content = await handle.readFile();
    try {
      return parseKeyFileContent(file, content);
    } finally {
      content.fill(0);
    }
  } finally {
    await handle.close();
  }
}

/** Writes a new random key as base64 text to a file created with mode 0600; never overwrites. */
export async function createKeyFile(file: string): Promise<EncryptionKey> {
  const dir = path.dirname(file);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const exists = (): KeyError =>
    new KeyError(
      'already-exists',
      `key file ${file} already exists; refusing to overwrite it (segments written with it would become unreadable)`,
    );
  // Write a private temporary file completely, then link it to the final name: link() fails if
  // the name exists, so an existing key is never replaced, and nobody can read a half-written key.
  const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const bytes = randomBytes(KEY_BYTES);
  const text = Buffer.from(`${bytes.toString('base64')}\n`, 'latin1');
  try {
    const handle = await fs.open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.link(temp, file).catch((err: unknown) => {
      throw errorCode(err) === 'EEXIST' ? exists() : err;
    });
    await syncDirectory(dir);
    return EncryptionKey.fromBytes(bytes, `key file ${file}`);
  } catch (err) {
    throw err instanceof KeyError ? err : ioError(file, 'create', err);
  } finally {
    await fs.unlink(temp).catch(() => undefined);
    bytes.fill(0);
    text.fill(0);
  }
}

// A key lost in a crash right after creation would orphan everything encrypted with it.
async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, fsConstants.O_RDONLY).catch(() => undefined);
  if (handle === undefined) return;
  await handle.sync().catch(() => undefined); // not every platform can sync a directory
  await handle.close();
}

// Two processes starting at once may both see no file; the loser of the exclusive create reads
// the winner's key instead of failing.
async function createKeyFileOrLoadRacer(file: string, options: LoadKeyFileOptions): Promise<EncryptionKey> {
  try {
    return await createKeyFile(file);
  } catch (err) {
    if (err instanceof KeyError && err.code === 'already-exists') {
      return loadKeyFile(file, { ...options, create: false });
    }
    throw err;
  }
}

function parseKeyFileContent(file: string, content: Buffer): EncryptionKey {
  const source = `key file ${file}`;
  if (content.length === KEY_BYTES) return EncryptionKey.fromBytes(content, source);
  const text = content.toString('latin1').trim();
  if (BASE64_KEY.test(text)) return keyFromBase64(text, source);
  throw new KeyError(
    'bad-length',
    `${source} has ${content.length} bytes; expected ${KEY_BYTES} random bytes, base64 or raw; ${CREATE_HINT}`,
  );
}

function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

function ioError(file: string, action: string, err: unknown): KeyError {
  const reason = err instanceof Error ? err.message : String(err);
  const fix =
    errorCode(err) === 'EACCES' ? '; check the owner and permissions of the file and its directory' : '';
  return new KeyError('io', `cannot ${action} key file ${file}: ${reason}${fix}`);
}
