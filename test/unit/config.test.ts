import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, ENV_KEYS, loadConfig } from '../../lib/config/config';

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'osr-config-'));
}

test('defaults use the embedded stack under ./.osr', () => {
  const cwd = tempDir();
  const config = loadConfig({ env: {}, cwd });
  assert.equal(config.stateDir, path.join(cwd, '.osr'));
  assert.equal(config.temporal.address, undefined);
  assert.equal(config.temporal.port, 7233);
  assert.equal(config.storage.connectionString, undefined);
  assert.equal(config.storage.azuritePort, 10000);
});

test('environment overrides the file, which overrides defaults', () => {
  const cwd = tempDir();
  fs.writeFileSync(
    path.join(cwd, 'osr.config.json'),
    JSON.stringify({ temporal: { namespace: 'dr', port: 7300 } }),
  );
  const config = loadConfig({ env: { OSR_TEMPORAL_PORT: '7400' }, cwd });
  assert.equal(config.temporal.namespace, 'dr');
  assert.equal(config.temporal.port, 7400);
});

test('a real cluster and storage account need configuration only', () => {
  const config = loadConfig({
    env: {
      OSR_TEMPORAL_ADDRESS: 'dr.a1b2c.tmprl.cloud:7233',
      OSR_TEMPORAL_NAMESPACE: 'dr.a1b2c',
      OSR_TEMPORAL_API_KEY: 'secret-api-key',
      AZURE_STORAGE_CONNECTION_STRING:
        'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=b;EndpointSuffix=core.windows.net',
    },
    cwd: tempDir(),
  });
  assert.equal(config.temporal.address, 'dr.a1b2c.tmprl.cloud:7233');
  assert.match(config.storage.connectionString ?? '', /AccountName=a/);
});

test('a bad value names the key, its source and what is expected', () => {
  const cwd = tempDir();
  fs.writeFileSync(
    path.join(cwd, 'osr.config.json'),
    JSON.stringify({ temporal: { address: 'no-port-here' } }),
  );
  assert.throws(
    () => loadConfig({ env: {}, cwd }),
    (err: Error) =>
      err instanceof ConfigError &&
      /"temporal\.address" in .*osr\.config\.json/.test(err.message) &&
      /host:port/.test(err.message),
  );
});

test('an unknown key is named with the fix', () => {
  const cwd = tempDir();
  fs.writeFileSync(path.join(cwd, 'osr.config.json'), JSON.stringify({ storage: { conectionString: 'x' } }));
  assert.throws(
    () => loadConfig({ env: {}, cwd }),
    (err: Error) =>
      /unknown key "storage\.conectionString"/.test(err.message) && /check its spelling/.test(err.message),
  );
});

test('an environment variable that must be a number says so', () => {
  assert.throws(
    () => loadConfig({ env: { OSR_AZURITE_PORT: 'ten-thousand' }, cwd: tempDir() }),
    (err: Error) => /OSR_AZURITE_PORT="ten-thousand" is not a number/.test(err.message),
  );
});

test('malformed JSON names the file', () => {
  const cwd = tempDir();
  fs.writeFileSync(path.join(cwd, 'osr.config.json'), '{ "site": ');
  assert.throws(() => loadConfig({ env: {}, cwd }), /osr\.config\.json is not valid JSON/);
});

test('a missing explicit config file is an error, not silently ignored', () => {
  assert.throws(
    () => loadConfig({ env: { OSR_CONFIG: '/nonexistent/osr.json' }, cwd: tempDir() }),
    /does not exist/,
  );
});

test('every environment variable the configuration reads is in docs/configuration.md, beside its key', () => {
  const docs = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'docs', 'configuration.md'), 'utf8');
  const rows = docs.split('\n').filter((line) => line.startsWith('|'));
  const documented = (name: string, key: string) =>
    rows.some((row) => row.includes(`\`${name}\``) && row.includes(`\`${key}\``));
  // One row covers the SAS URL of every role and container, as a pattern.
  const sas = /^OSR_STORAGE_SAS_/;
  assert.ok(documented('OSR_STORAGE_SAS_<ROLE>_<CONTAINER>', 'storage.sas.<role>.<container>'));
  const undocumented = Object.entries(ENV_KEYS)
    .filter(([name, { key }]) => !sas.test(name) && !documented(name, key))
    .map(([name, { key }]) => `${name} (${key})`);
  assert.deepEqual(undocumented, []);
});
