// Storage sign-in without a network: the configuration of storage.auth, the SAS checks a worker
// runs before it polls, the role table's one gate, and that no secret survives into a message.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createHttpHeaders, createPipelineRequest, RestError } from '@azure/core-rest-pipeline';
import { ContainerClient } from '@azure/storage-blob';
import { insecureChannels } from '../../lib/config/channel-security';
import { loadConfig } from '../../lib/config/config';
import { ROLE_GRANTS, STORAGE_ROLES } from '../../lib/config/storage-roles';
import { CONTAINERS, storageCredentialProblem } from '../../lib/azure/blob-client';
import { openRoleStorage } from '../../lib/azure/role-storage';
import { checkContainerSas, StorageSignInError } from '../../lib/azure/sas-check';
import { plainBlobUrl, redactStorageSecrets } from '../../lib/azure/storage-secrets';

const SIG = 'c2VjcmV0LXNpZ25hdHVyZS1ub3QtZm9yLWxvZ3M%3D';
const future = new Date(Date.now() + 3600_000).toISOString();
const sas = (container: string, query: string) =>
  `https://acct.blob.core.windows.net/${container}?sv=2025-01-05&${query}&sig=${SIG}`;
const check = (sasUrl: string | undefined, needs = 'rwdl') =>
  checkContainerSas({ role: 'process-server', key: 'cache', container: 'osr-cache', needs, sasUrl });

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof StorageSignInError, String(err));
    assert.ok(!err.message.includes(SIG), `the signature leaked: ${err.message}`);
    assert.match(err.message, /^storage sign-in of the process-server role refused: /);
    assert.match(err.message, /Fix: issue a container SAS for osr-cache with permissions rwdl/);
    assert.match(err.message, /storage\.sas\.process-server\.cache \(OSR_STORAGE_SAS_PROCESS_SERVER_CACHE\)/);
    return err.message;
  }
  assert.fail('not refused');
}

test('a container SAS with the permissions, container and a later expiry passes', () => {
  check(sas('osr-cache', `sr=c&sp=racwdl&se=${future}`));
});

test('each SAS flaw is refused naming the role, the container, the flaw and the fix', () => {
  assert.match(
    refusal(() => check(sas('osr-cache', `sr=c&sp=rl&se=${future}`))),
    /lacks permission w \(write\), d \(delete\) that the process-server role needs \(it grants sp=rl; needed: rwdl\)/,
  );
  assert.match(
    refusal(() => check(sas('osr-cache', `sr=c&sp=rwdl&se=2020-01-01T00:00:00Z`))),
    /expired at 2020-01-01T00:00:00Z/,
  );
  assert.match(
    refusal(() => check(sas('osr-vault', `sr=c&sp=rwdl&se=${future}`))),
    /is for https:\/\/acct\.blob\.core\.windows\.net\/osr-vault, not for container osr-cache/,
  );
  assert.match(
    refusal(() => check(sas('osr-cache', `sr=b&sp=rwdl&se=${future}`))),
    /sr=b: a blob SAS, not a container SAS/,
  );
  assert.match(
    refusal(() => check(sas('osr-cache', `ss=b&srt=sco&sp=rwdl&se=${future}`))),
    /not a container SAS \(no sr=c; an account SAS/,
  );
  assert.match(
    refusal(() => check(sas('osr-cache', `sr=c&sp=rwdl`))),
    /has no expiry \(se\)/,
  );
  assert.match(
    refusal(() => check(undefined)),
    /no SAS URL is given for container osr-cache/,
  );
  assert.match(
    refusal(() => check('https://acct.blob.core.windows.net/osr-cache')),
    /carries no SAS/,
  );
});

test('storage.auth: sas per role from the environment, entra needs accountUrl, key is the default', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-auth-'));
  assert.equal(loadConfig({ env: {}, cwd }).storage.auth, 'key');
  const url = sas('osr-cache', `sr=c&sp=rwdl&se=${future}`);
  const config = loadConfig({
    env: { OSR_STORAGE_AUTH: 'sas', OSR_STORAGE_SAS_PROCESS_SERVER_CACHE: url },
    cwd,
  });
  assert.equal(config.storage.sas['process-server']?.cache, url);
  assert.throws(
    () => loadConfig({ env: { OSR_STORAGE_AUTH: 'entra' }, cwd }),
    /storage\.auth "entra" needs the account's blob endpoint: set storage\.accountUrl/,
  );
  assert.throws(
    () => loadConfig({ env: { OSR_STORAGE_SAS_CONTROL_VAULT: url }, cwd }),
    /storage\.sas is set but storage\.auth is "key"/,
  );
  assert.throws(() => loadConfig({ env: { OSR_STORAGE_AUTH: 'token' }, cwd }), /OSR_STORAGE_AUTH/);
});

test('a role reaches only the containers of its row, in every sign-in mode', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-auth-'));
  const key = loadConfig({ env: {}, cwd });
  const entra = loadConfig({
    env: { OSR_STORAGE_AUTH: 'entra', OSR_STORAGE_ACCOUNT_URL: 'https://acct.blob.core.windows.net' },
    cwd,
  });
  for (const config of [key, entra])
    for (const role of STORAGE_ROLES) {
      const storage = openRoleStorage(config, role);
      for (const [name, container] of Object.entries(CONTAINERS)) {
        const given = name in ROLE_GRANTS[role];
        if (given) assert.equal(storage.getContainerClient(container).containerName, container);
        else
          assert.throws(
            () => storage.getContainerClient(container),
            new RegExp(`the ${role} role is not given storage container ${container}`),
          );
      }
    }
  // Only the applier writes replicas; the process server has no replica or failover container.
  assert.deepEqual(
    STORAGE_ROLES.filter((r) => ROLE_GRANTS[r].replica?.includes('w')),
    ['cloud-applier'],
  );
  assert.deepEqual(Object.keys(ROLE_GRANTS['process-server']).sort(), ['cache', 'vault']);
  // Under sas every container of the row needs its SAS, checked before any request.
  assert.throws(
    () => openRoleStorage(loadConfig({ env: { OSR_STORAGE_AUTH: 'sas' }, cwd }), 'cloud-applier'),
    /storage sign-in of the cloud-applier role refused: no SAS URL is given for container osr-cache/,
  );
  const entraVault = openRoleStorage(entra, 'control').getContainerClient(CONTAINERS.vault);
  assert.ok(entraVault instanceof ContainerClient);
  assert.equal(entraVault.url, 'https://acct.blob.core.windows.net/osr-vault');
});

test('signatures, account keys and client secrets are redacted from any text', () => {
  const text = `GET https://a.blob.core.windows.net/osr-cache?sv=1&sig=${SIG}&se=x; DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc/def==;EndpointSuffix=core.windows.net client_secret=s3cr3t&x=1`;
  const out = redactStorageSecrets(text);
  for (const secret of [SIG, 'abc/def==', 's3cr3t']) assert.ok(!out.includes(secret), out);
  assert.match(out, /sig=\[redacted\]&se=x/);
  // What leaves the process as a blob's address (an ARM import's sourceUri) carries no SAS.
  assert.equal(
    plainBlobUrl(`https://a.blob.core.windows.net/osr-failover/test-m-1/disk0?sv=1&sr=c&sig=${SIG}`),
    'https://a.blob.core.windows.net/osr-failover/test-m-1/disk0',
  );
});

test('a SAS or Entra ID endpoint in plain HTTP off this host is named as an insecure channel', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-auth-'));
  const offHost = `http://storage.example.net/acct/osr-vault?sv=1&sr=c&sp=rwdl&se=${future}&sig=${SIG}`;
  const sasConfig = loadConfig({
    env: { OSR_STORAGE_AUTH: 'sas', OSR_STORAGE_SAS_CONTROL_VAULT: offHost },
    cwd,
  });
  const found = insecureChannels(sasConfig);
  assert.deepEqual(found, [
    'storage at storage.example.net is reached over plain HTTP with a SAS: use https:// in storage.sas',
  ]);
  const entra = loadConfig({
    env: { OSR_STORAGE_AUTH: 'entra', OSR_STORAGE_ACCOUNT_URL: 'http://storage.example.net/acct' },
    cwd,
  });
  assert.match(
    insecureChannels(entra).join('\n'),
    /plain HTTP with an Entra ID token: use https:\/\/ in storage\.accountUrl/,
  );
  const loopback = loadConfig({
    env: { OSR_STORAGE_AUTH: 'entra', OSR_STORAGE_ACCOUNT_URL: 'http://127.0.0.1:10000/acct' },
    cwd,
  });
  assert.deepEqual(insecureChannels(loopback), []);
});

test('a 403 from storage names the credential that was refused and its fix: key, SAS or Entra identity', () => {
  const refused = (url: string, authorization: string, code = 'AuthorizationFailure') =>
    storageCredentialProblem(
      new RestError('refused', {
        statusCode: 403,
        code,
        request: createPipelineRequest({ url, headers: createHttpHeaders({ authorization }) }),
      }),
    );
  const key = refused('https://acct.blob.core.windows.net/osr-vault/x', 'SharedKey acct:abc');
  assert.match(key ?? '', /^storage account acct at https:\/\/acct\.blob\.core\.windows\.net refused/);
  assert.match(
    key ?? '',
    /AccountKey or SAS in storage\.connectionString .* Fix: copy a current connection string/,
  );
  const bySas = refused(sas('osr-cache', 'sp=r'), '');
  assert.match(
    bySas ?? '',
    /the SAS is wrong, expired, or lacks a permission .* storage\.sas\.<role>\.<container>/,
  );
  assert.ok(!bySas?.includes(SIG), 'the signature stays out of the message');
  const entra = refused(
    'https://acct.blob.core.windows.net/osr-vault/x',
    'Bearer eyJ',
    'AuthorizationPermissionMismatch',
  );
  assert.match(entra ?? '', /Entra identity .* no data role .* Storage Blob Data Contributor/);
  assert.equal(
    storageCredentialProblem(new RestError('gone', { statusCode: 404, code: 'BlobNotFound' })),
    undefined,
  );
});
