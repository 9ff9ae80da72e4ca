// Encryption keys: loading, creating, ids, and that key bytes never show in output or errors
// (invariant 5: keys never appear in logs or elsewhere in clear).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { format, inspect } from 'node:util';
import {
  createKeyFile,
  EncryptionKey,
  KeyError,
  keyFromBase64,
  Keyring,
  loadKeyFile,
} from '../../lib/segments/keys';

// Every spelling of the key bytes that could leak through text.
function spellings(bytes: Buffer): string[] {
  return [
    bytes.toString('base64'),
    bytes.toString('base64url'),
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
    bytes.toString('latin1'),
    bytes.subarray(0, 12).toString('base64'), // a prefix is a leak too
    bytes.subarray(4, 16).toString('hex'),
    JSON.stringify([...bytes.subarray(0, 8)]).slice(1, -1), // "12,200,..." as in a printed array
    [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' '), // as inspect prints a Buffer
  ];
}

function assertNoLeak(text: string, bytes: Buffer, what: string): void {
  for (const spelling of spellings(bytes)) {
    assert.ok(!text.includes(spelling), `${what} contains key material: ${text}`);
  }
}

async function errorOf(run: () => unknown): Promise<KeyError> {
  try {
    await run();
  } catch (err) {
    assert.ok(err instanceof KeyError, `expected KeyError, got ${String(err)}`);
    return err;
  }
  return assert.fail('expected an error');
}

describe('encryption keys', () => {
  let dir = '';
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'osr-keys-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('id is the first 8 hex characters of SHA-256 of the key, the same from every source', async () => {
    const bytes = randomBytes(32);
    const id = createHash('sha256').update(bytes).digest('hex').slice(0, 8);
    assert.equal(EncryptionKey.fromBytes(bytes).id, id);
    assert.equal(keyFromBase64(bytes.toString('base64')).id, id);
    assert.equal(keyFromBase64(`  ${bytes.toString('base64url')}\n`).id, id);
    assert.equal(EncryptionKey.fromKeyObject(EncryptionKey.fromBytes(bytes).keyObject).id, id);
    const raw = path.join(dir, 'raw.key');
    await fs.writeFile(raw, bytes, { mode: 0o600 });
    assert.equal((await loadKeyFile(raw)).id, id);
    const text = path.join(dir, 'text.key');
    await fs.writeFile(text, `${bytes.toString('base64')}\n`, { mode: 0o600 });
    assert.equal((await loadKeyFile(text)).id, id);
    assert.ok(EncryptionKey.fromBytes(bytes).equals(await loadKeyFile(raw)));
    assert.ok(!EncryptionKey.generate().equals(EncryptionKey.fromBytes(bytes)));
  });

  test('the key never appears in JSON, inspect, toString or format of a key or keyring', () => {
    const bytes = randomBytes(32);
    const key = EncryptionKey.fromBytes(bytes);
    const keyring = new Keyring([key, EncryptionKey.generate()]);
    const outputs: Array<[string, string]> = [
      ['JSON.stringify(key)', JSON.stringify(key)],
      ['JSON.stringify({ key })', JSON.stringify({ nested: { key } })],
      ['JSON.stringify(keyring)', JSON.stringify(keyring)],
      ['inspect(key)', inspect(key)],
      ['inspect(key, showHidden)', inspect(key, { showHidden: true, depth: Infinity, getters: true })],
      [
        'inspect(keyring, showHidden)',
        inspect(keyring, { showHidden: true, depth: Infinity, getters: true }),
      ],
      ['inspect(keyObject, showHidden)', inspect(key.keyObject, { showHidden: true, depth: Infinity })],
      ['String(key)', String(key)],
      ['template', `${key} ${keyring}`],
      ['format %o', format('%o %O %j', key, keyring, key)],
      ['JSON.stringify(keyObject)', JSON.stringify(key.keyObject)],
    ];
    for (const [what, text] of outputs) assertNoLeak(text, bytes, what);
    assert.equal(JSON.stringify(key), JSON.stringify({ id: key.id }));
    assert.ok(inspect(key).includes(key.id));
  });

  test('errors name the problem and the fix, and never contain key material', async () => {
    const secret = randomBytes(48);
    const short = path.join(dir, 'short.key');
    await fs.writeFile(short, secret.subarray(0, 17), { mode: 0o600 });
    const shortError = await errorOf(() => loadKeyFile(short));
    assert.equal(
      shortError.message,
      `key file ${short} has 17 bytes; expected 32 random bytes, base64 or raw; create one with \`(umask 077; openssl rand -base64 32 > <file>)\``,
    );
    assert.equal(shortError.code, 'bad-length');

    const longText = path.join(dir, 'long-text.key');
    await fs.writeFile(longText, `${secret.toString('base64')}\n`, { mode: 0o600 });
    const errors: KeyError[] = [
      shortError,
      await errorOf(() => loadKeyFile(longText)),
      await errorOf(() => keyFromBase64(secret.subarray(0, 31).toString('base64'))),
      await errorOf(() => keyFromBase64(secret.subarray(0, 33).toString('base64'))),
      await errorOf(() => keyFromBase64(`${secret.subarray(0, 32).toString('hex')}`)),
      await errorOf(() => EncryptionKey.fromBytes(secret.subarray(0, 31))),
    ];
    for (const error of errors) {
      assert.match(
        error.message,
        /expected 32 random bytes, base64 or raw; create one with `\(umask 077; openssl rand -base64 32 > <file>\)`/,
      );
      assertNoLeak(`${error.message} ${inspect(error)}`, secret.subarray(0, 32), 'error');
      assertNoLeak(error.message, secret.subarray(16, 48), 'error');
    }
    const missing = await errorOf(() => loadKeyFile(path.join(dir, 'missing.key')));
    assert.equal(missing.code, 'not-found');
    assert.match(missing.message, /does not exist; create one with `\(umask 077; openssl rand/);
  });

  test('a missing key file is created with mode 0600 when asked, and reloads to the same key', async () => {
    const file = path.join(dir, 'sub', 'created.key');
    const created = await loadKeyFile(file, { create: true });
    const stat = await fs.stat(file);
    assert.equal(stat.mode & 0o777, 0o600);
    const content = await fs.readFile(file, 'utf8');
    assert.match(content, /^[A-Za-z0-9+/]{43}=\n$/);
    assert.equal(
      created.id,
      createHash('sha256').update(Buffer.from(content.trim(), 'base64')).digest('hex').slice(0, 8),
    );
    assert.ok((await loadKeyFile(file, { create: true })).equals(created), 'second use loads, not replaces');
    const refused = await errorOf(() => createKeyFile(file));
    assert.equal(refused.code, 'already-exists');
    assert.equal(await fs.readFile(file, 'utf8'), content, 'existing key untouched');
  });

  test('two processes creating the same key file at once end up with one key', async () => {
    const file = path.join(dir, 'race.key');
    const keys = await Promise.all([1, 2, 3, 4].map(() => loadKeyFile(file, { create: true })));
    for (const key of keys) assert.ok(key.equals(keys[0]!));
  });

  test('a key file readable by group or others is refused unless allowed', async () => {
    const file = path.join(dir, 'open.key');
    await fs.writeFile(file, randomBytes(32));
    await fs.chmod(file, 0o644);
    const error = await errorOf(() => loadKeyFile(file));
    assert.equal(error.code, 'insecure-permissions');
    assert.equal(
      error.message,
      `key file ${file} has mode 0644, so group or others can access it; run \`chmod 600 ${file}\``,
    );
    assert.equal((await loadKeyFile(file, { requirePrivate: false })).id.length, 8);
  });

  test('a keyring finds keys by id and accepts the same key twice', () => {
    const a = EncryptionKey.generate();
    const b = EncryptionKey.generate();
    const keyring = new Keyring([a]).add(b).add(EncryptionKey.fromKeyObject(a.keyObject));
    assert.equal(keyring.size, 2);
    assert.equal(keyring.get(b.id), b);
    assert.ok(keyring.has(a.id));
    assert.equal(keyring.get('00000000'), undefined);
    assert.deepEqual(new Set(keyring.ids), new Set([a.id, b.id]));
  });
});
