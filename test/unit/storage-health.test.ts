// The blob client's per-try policy (shared/storage-health.ts) against a real HTTP endpoint on
// loopback: throttled answers are retried and counted, a try that gets no answer is aborted after
// storage.tryTimeoutSeconds and retried, and what is left after the last try is named.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../lib/config/config';
import { createBlobServiceClient } from '../../lib/azure/blob-client';
import { storageProblem, withStorageWatch } from '../../lib/azure/storage-health';

let server: http.Server;
let port = 0;
let mode: 'throttle-then-ok' | 'silent' = 'throttle-then-ok';
let requests = 0;
const configFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'osr-sh-')), 'osr.config.json');
fs.writeFileSync(configFile, '{}');

before(async () => {
  server = http.createServer((req, res) => {
    requests++;
    req.resume();
    if (mode === 'silent') return; // accepts, never answers
    if (requests % 2 === 1) {
      res.writeHead(503, { 'x-ms-error-code': 'ServerBusy' });
      res.end();
      return;
    }
    res.writeHead(201, { etag: '"0x1"', 'last-modified': new Date().toUTCString() });
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  fs.rmSync(path.dirname(configFile), { recursive: true, force: true });
});

function client(tryTimeoutSeconds: number, maxTries: number) {
  const config = loadConfig({
    env: {
      OSR_CONFIG: configFile,
      OSR_AZURITE_PORT: String(port),
      OSR_STORAGE_TRY_TIMEOUT_SECONDS: String(tryTimeoutSeconds),
      OSR_STORAGE_MAX_TRIES: String(maxTries),
    },
  });
  return createBlobServiceClient(config).getContainerClient('c').getBlockBlobClient('b');
}

test('a 503 Server Busy is retried and counted for the step that met it', async () => {
  mode = 'throttle-then-ok';
  requests = 0;
  const { trouble } = await withStorageWatch(() => client(5, 3).upload(Buffer.from('x'), 1));
  assert.equal(requests, 2, 'one throttled try, then one that went through');
  assert.equal(trouble.throttled, 1);
  assert.equal(trouble.timeouts, 0);
  assert.match(trouble.last ?? '', /^503 ServerBusy on PUT /);
});

test('a try with no answer is aborted after the try time-out, retried, then named as unreachable', async () => {
  mode = 'silent';
  requests = 0;
  let caught: unknown;
  try {
    await withStorageWatch(() => client(0.3, 2).upload(Buffer.from('x'), 1));
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Error, 'the call failed after its tries');
  assert.equal(requests, 2, 'both tries reached the endpoint');
  const trouble = (caught as { storageTrouble?: { timeouts: number } }).storageTrouble;
  assert.equal(trouble?.timeouts, 2, 'each try timed out');
  const problem = storageProblem(caught);
  assert.equal(problem?.problem, 'unreachable');
  assert.match(problem?.message ?? '', /did not answer in time/);
});

test('errors that are not the endpoint failing are not called storage problems', () => {
  assert.equal(storageProblem(Object.assign(new Error('not found'), { statusCode: 404 })), undefined);
  assert.equal(storageProblem(new Error('a bug')), undefined);
  assert.equal(storageProblem(Object.assign(new Error('busy'), { statusCode: 503 }))?.problem, 'throttled');
});
