// API identities: one bearer token per person or system, with a role. The vault keeps each as
// tokens/<name>.json holding a salted scrypt hash of the secret, never the secret itself: a copy
// of the vault (storage keys, backups, a reader of the account) must not yield a usable token.
// The secret is 256 random bits, so it cannot be guessed either way; scrypt (N=2^14, ~16 MiB,
// tens of ms) with a per-token salt also keeps a leaked hash from being checked quickly against
// tokens seen elsewhere. The API checks a token once with scrypt and then remembers, in memory,
// the digest of the token it verified against that record's hash, so a request costs one vault
// read (which also makes a revocation take effect at the next request).
import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { VaultConflictError, type Vault } from '../lib/azure/vault';
import { checkName, vaultSegment } from '../shared/names';
import { isRole, ROLES, type Role } from '../shared/roles';
import { audited, currentActor } from './audit';
import { OperationError, type ControlContext } from './context';

/** The identity of the single token of earlier releases (api.token / the token file): an admin. */
export const LEGACY_IDENTITY = 'legacy';

export interface TokenInfo {
  name: string;
  role: Role;
  createdAt: string;
  createdBy: string;
  expiresAt?: string;
  lastUsedAt?: string;
  revokedAt?: string;
  revokedBy?: string;
}

interface TokenRecord extends TokenInfo {
  hash?: { alg: 'scrypt'; N: number; r: number; p: number; salt: string; digest: string };
}

const SCRYPT = { N: 2 ** 14, r: 8, p: 1 };
const PREFIX = 'osr';

export const tokenDoc = (name: string) => `tokens/${vaultSegment('identity name', name)}.json`;

function derive(secret: string, salt: Buffer, o: ScryptOptions & { N: number }): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(secret, salt, 32, { ...o, maxmem: 64 * 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

function info(record: TokenRecord): TokenInfo {
  const { hash: _hash, ...rest } = record;
  return rest;
}

export interface NewToken {
  name: string;
  role: Role;
  /** Seconds from now; none: never expires. */
  expiresInSeconds?: number;
}

export const createToken = audited(
  'token.create',
  (ctx: ControlContext, input: NewToken) => makeToken(ctx, input),
  (_ctx, input) => ({ target: input.name, details: { role: input.role, expiresIn: input.expiresInSeconds } }),
);

async function makeToken(
  ctx: ControlContext,
  input: NewToken,
): Promise<{ token: TokenInfo; secret: string }> {
  checkName('identity', input.name);
  if (input.name === LEGACY_IDENTITY)
    throw new OperationError(
      `"${LEGACY_IDENTITY}" names the single token of earlier releases (api.token or its file); choose another name`,
      'invalid',
    );
  if (!isRole(input.role))
    throw new OperationError(`role "${String(input.role)}" is not known; use ${ROLES.join(', ')}`, 'invalid');
  const ttl = input.expiresInSeconds;
  if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 60))
    throw new OperationError('expiry: at least 60 seconds (e.g. 90d), or leave it out', 'invalid');
  const secretPart = randomBytes(32).toString('base64url');
  const salt = randomBytes(16);
  const digest = await derive(secretPart, salt, SCRYPT);
  const now = new Date();
  const record: TokenRecord = {
    name: input.name,
    role: input.role,
    createdAt: now.toISOString(),
    createdBy: currentActor().user,
    ...(ttl === undefined ? {} : { expiresAt: new Date(now.getTime() + ttl * 1000).toISOString() }),
    hash: { alg: 'scrypt', ...SCRYPT, salt: salt.toString('base64'), digest: digest.toString('base64') },
  };
  const existing = await ctx.vault.read<TokenRecord>(tokenDoc(input.name));
  if (existing && !existing.value.revokedAt)
    throw new OperationError(
      `identity ${input.name} already has a token (${existing.value.role}); revoke it first (\`osr tokens revoke ${input.name}\`) or choose another name`,
      'conflict',
    );
  try {
    // Over a revoked record only if it is still the one read (no concurrent create wins twice).
    await ctx.vault.write(tokenDoc(input.name), record, existing?.etag);
  } catch (err) {
    if (err instanceof VaultConflictError)
      throw new OperationError(`identity ${input.name} was just given a token by someone else`, 'conflict');
    throw err;
  }
  return { token: info(record), secret: `${PREFIX}.${input.name}.${secretPart}` };
}

export async function listTokens(ctx: ControlContext): Promise<TokenInfo[]> {
  const records = await ctx.vault.list<TokenRecord>('tokens/');
  return records.map(info).sort((a, b) => a.name.localeCompare(b.name));
}

export const revokeToken = audited(
  'token.revoke',
  (ctx: ControlContext, name: string) => revoke(ctx, name),
  (_ctx, name) => ({ target: name }),
);

async function revoke(ctx: ControlContext, name: string): Promise<TokenInfo> {
  checkName('identity', name);
  const by = currentActor().user;
  const at = new Date().toISOString();
  if (name === LEGACY_IDENTITY) {
    // The legacy secret lives outside the vault; this record is what turns it off.
    const record = await ctx.vault.update<TokenRecord>(tokenDoc(name), (current) => ({
      ...(current ?? { name, role: 'admin', createdAt: at, createdBy: 'earlier release' }),
      revokedAt: current?.revokedAt ?? at,
      revokedBy: current?.revokedBy ?? by,
    }));
    return info(record);
  }
  const existing = await ctx.vault.read<TokenRecord>(tokenDoc(name));
  if (!existing)
    throw new OperationError(`no token for identity ${name}; \`osr tokens list\` shows them`, 'not-found');
  const record = await ctx.vault.update<TokenRecord>(tokenDoc(name), (current) => ({
    ...(current ?? existing.value),
    revokedAt: current?.revokedAt ?? at,
    revokedBy: current?.revokedBy ?? by,
  }));
  return info(record);
}

/** Why a token was not accepted, for the 401 message (never the token itself). */
export type TokenRefusal = 'unknown' | 'revoked' | 'expired';

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('base64');

/** Checks presented tokens against the vault; one per API server (it remembers verified tokens). */
export class TokenVerifier {
  /** sha256(token) → the record digest it was verified against. */
  readonly #verified = new Map<string, string>();
  readonly #lastUsedWritten = new Map<string, number>();

  constructor(
    private readonly vault: Vault,
    /** The legacy single token, accepted as the admin `legacy` unless revoked in the vault. */
    private readonly legacyToken?: string,
  ) {}

  async verify(presented: string): Promise<{ identity: TokenInfo } | { refused: TokenRefusal }> {
    if (this.legacyToken !== undefined && equal(presented, this.legacyToken)) {
      const record = (await this.vault.read<TokenRecord>(tokenDoc(LEGACY_IDENTITY)))?.value;
      if (record?.revokedAt) return { refused: 'revoked' };
      return {
        identity: { name: LEGACY_IDENTITY, role: 'admin', createdAt: '', createdBy: 'earlier release' },
      };
    }
    const match = /^osr\.([a-z0-9][a-z0-9-]{0,62})\.([A-Za-z0-9_-]{43})$/.exec(presented);
    if (!match || match[1] === LEGACY_IDENTITY) return { refused: 'unknown' };
    const record = (await this.vault.read<TokenRecord>(tokenDoc(match[1] as string)))?.value;
    const hash = record?.hash;
    if (!record || !hash || !isRole(record.role)) return { refused: 'unknown' };
    const key = sha256(presented);
    if (this.#verified.get(key) !== hash.digest) {
      const digest = await derive(match[2] as string, Buffer.from(hash.salt, 'base64'), hash);
      if (!timingSafeEqual(digest, Buffer.from(hash.digest, 'base64'))) return { refused: 'unknown' };
      this.#verified.set(key, hash.digest);
    }
    if (record.revokedAt) return { refused: 'revoked' };
    if (record.expiresAt && Date.parse(record.expiresAt) <= Date.now()) return { refused: 'expired' };
    this.#noteUse(record.name);
    return { identity: info(record) };
  }

  /** Records the last use at most once a minute per identity, without delaying the request. */
  #noteUse(name: string): void {
    const now = Date.now();
    if (now - (this.#lastUsedWritten.get(name) ?? 0) < 60_000) return;
    this.#lastUsedWritten.set(name, now);
    void this.#writeLastUse(name, new Date(now).toISOString()).catch(() => undefined);
  }

  async #writeLastUse(name: string, at: string): Promise<void> {
    const current = await this.vault.read<TokenRecord>(tokenDoc(name));
    // A conflict means someone changed the record (a revocation): theirs wins, the time can wait.
    if (current) await this.vault.write(tokenDoc(name), { ...current.value, lastUsedAt: at }, current.etag);
  }
}

function equal(a: string, b: string): boolean {
  // Hashed first so the comparison takes the same time whatever the lengths.
  return timingSafeEqual(Buffer.from(sha256(a)), Buffer.from(sha256(b)));
}
