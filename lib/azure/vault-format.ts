// The format of a vault document: JSON with a `formatVersion` first key. Documents written before
// versions existed carry none and read as version 1. A document from a newer OSR is refused with
// the fix instead of being half-understood, and the version never reaches the callers' values.
export const VAULT_FORMAT_VERSION = 1;

/** A vault document this build cannot read. The message names the document, the version and the fix. */
export class VaultFormatError extends Error {
  override readonly name = 'VaultFormatError';
  constructor(
    readonly document: string,
    readonly version: unknown,
    message: string,
  ) {
    super(message);
  }
}

/** The stored text of a value: objects get the current formatVersion first. */
export function encodeVaultDocument(value: unknown): string {
  const stamped = isPlainObject(value) ? { formatVersion: VAULT_FORMAT_VERSION, ...value } : value;
  return JSON.stringify(stamped, null, 2);
}

/** Parses a stored document, checks its version and returns the value without `formatVersion`. */
export function decodeVaultDocument<T>(document: string, text: string): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new VaultFormatError(
      document,
      undefined,
      `vault document ${document} is not JSON (${text.length} bytes); restore it from a backup of the vault ` +
        'container or remove it',
    );
  }
  if (!isPlainObject(parsed) || !('formatVersion' in parsed)) return parsed as T;
  const { formatVersion, ...value } = parsed;
  if (!Number.isSafeInteger(formatVersion) || (formatVersion as number) < 1) {
    throw new VaultFormatError(
      document,
      formatVersion,
      `vault document ${document} has formatVersion ${JSON.stringify(formatVersion)}, which no OSR writes; ` +
        'restore it from a backup of the vault container',
    );
  }
  if ((formatVersion as number) > VAULT_FORMAT_VERSION) {
    throw new VaultFormatError(
      document,
      formatVersion,
      `vault document ${document} has format version ${String(formatVersion)}, written by a newer OSR; ` +
        `this OSR reads up to version ${VAULT_FORMAT_VERSION}: upgrade OSR on this host to the release ` +
        'the other hosts run',
    );
  }
  return value as T;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
