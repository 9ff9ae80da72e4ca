// Which configured channels would carry OSR's traffic in clear across a network.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { insecureChannels } from '../../lib/config/channel-security';
import { loadConfig } from '../../lib/config/config';

function configWith(env: NodeJS.ProcessEnv, file: object = {}) {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-channels-'));
  fs.writeFileSync(path.join(cwd, 'osr.config.json'), JSON.stringify(file));
  try {
    return loadConfig({ env, cwd });
  } finally {
    fs.rmSync(cwd, { recursive: true, force: true });
  }
}

test('the embedded stack on loopback has no finding', () => {
  assert.deepEqual(insecureChannels(configWith({})), []);
  assert.deepEqual(
    insecureChannels(
      configWith({
        OSR_TEMPORAL_ADDRESS: '127.0.0.1:7233',
        OSR_STORAGE_CONNECTION_STRING:
          'DefaultEndpointsProtocol=http;AccountName=a;AccountKey=b;BlobEndpoint=http://127.0.0.1:10000/a;',
        OSR_ALERT_WEBHOOK_URL: 'http://localhost:9000/hook',
      }),
    ),
    [],
  );
});

test('production settings with TLS everywhere have no finding', () => {
  const config = configWith(
    {
      OSR_TEMPORAL_ADDRESS: 'dr.a1b2c.tmprl.cloud:7233',
      OSR_TEMPORAL_API_KEY: 'an-api-key',
      OSR_STORAGE_CONNECTION_STRING:
        'DefaultEndpointsProtocol=https;AccountName=osrdr;AccountKey=b;EndpointSuffix=core.windows.net',
      OSR_ALERT_WEBHOOK_URL: 'https://hooks.example.com/osr',
    },
    { api: { host: '0.0.0.0' } },
  );
  assert.deepEqual(insecureChannels(config), []);
});

test('each channel in clear across a network is named with its fix', () => {
  const found = insecureChannels(
    configWith(
      {
        OSR_TEMPORAL_ADDRESS: 'temporal.dc1.example:7233',
        OSR_STORAGE_CONNECTION_STRING: 'DefaultEndpointsProtocol=http;AccountName=osrdr;AccountKey=b',
        OSR_ALERT_WEBHOOK_URL: 'http://hooks.example.com/osr',
      },
      { api: { host: '10.0.0.5', insecureHttp: true } },
    ),
  );
  assert.equal(found.length, 4, found.join('\n'));
  assert.match(
    found[0]!,
    /Temporal at temporal\.dc1\.example:7233 is reached without TLS: set temporal\.tls .* or temporal\.apiKey/,
  );
  assert.match(
    found[1]!,
    /storage at osrdr\.blob\.core\.windows\.net is reached over plain HTTP: use DefaultEndpointsProtocol=https/,
  );
  assert.match(
    found[2]!,
    /the alert webhook hooks\.example\.com is plain HTTP: use an https:\/\/ alerts\.webhookUrl/,
  );
  assert.match(found[3]!, /osr serve listens on 10\.0\.0\.5 without TLS \(api\.insecureHttp\)/);
  for (const finding of found) assert.ok(!finding.includes('AccountKey'), 'no secret in a finding');
});
