// Vault documents: versioned on write, old unversioned ones read as version 1, newer refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeVaultDocument,
  encodeVaultDocument,
  VAULT_FORMAT_VERSION,
  VaultFormatError,
} from '../../lib/azure/vault-format';

test('a document round-trips and carries formatVersion first', () => {
  const value = { name: 'gold', rpoThresholdSeconds: 300 };
  const text = encodeVaultDocument(value);
  assert.ok(text.startsWith(`{\n  "formatVersion": ${VAULT_FORMAT_VERSION},`));
  assert.deepEqual(decodeVaultDocument('policies/gold.json', text), value);
});

test('an unversioned document (written before versions) reads unchanged', () => {
  const text = JSON.stringify({ name: 'gold', nested: { formatVersion: 9 } });
  assert.deepEqual(decodeVaultDocument('policies/gold.json', text), {
    name: 'gold',
    nested: { formatVersion: 9 },
  });
});

test('a newer, a malformed or a non-JSON document is refused naming the document and the fix', () => {
  const refused = (text: string, pattern: RegExp) =>
    assert.throws(
      () => decodeVaultDocument('machines/vm1.json', text),
      (e: unknown) =>
        e instanceof VaultFormatError && e.message.includes('machines/vm1.json') && pattern.test(e.message),
    );
  refused(JSON.stringify({ formatVersion: 7, name: 'vm1' }), /format version 7.*newer OSR.*upgrade OSR/);
  refused(JSON.stringify({ formatVersion: '1', name: 'vm1' }), /formatVersion "1".*restore/);
  refused(JSON.stringify({ formatVersion: 0 }), /formatVersion 0/);
  refused('{"name": "vm1"', /not JSON.*restore/);
});
