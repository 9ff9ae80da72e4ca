// The API's transport security on the secrets tests' stack (see secrets.test.ts): `osr serve`
// makes its own TLS certificate at first start, keeps it and prints its fingerprint.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { test } from 'node:test';
import {
  execFileAsync,
  env,
  osr,
  startServe,
  httpsCall,
  tlsDir,
  useSecretsStack,
} from '../helpers/secrets-fixture';

useSecretsStack();

test('osr serve speaks TLS with a certificate it makes at first start, keeps, and prints the fingerprint of', async () => {
  const first = await startServe();
  let fingerprint: string;
  let token: string;
  try {
    const out = first.output();
    assert.match(first.url, /^https:\/\/127\.0\.0\.1:\d+$/, out);
    assert.match(out, /self-signed, made now/);
    fingerprint = /SHA-256 fingerprint: ([0-9A-F:]{95})/.exec(out)?.[1] ?? '';
    assert.ok(fingerprint, out);
    token = /API token \(shown once[^\n]*\n {2}(\S+)/.exec(out)?.[1] ?? '';
    assert.ok(token.length >= 40, out);

    // The pair lives under the state folder; only the operator can read the key.
    const [certPath, keyPath] = [path.join(tlsDir(), 'cert.pem'), path.join(tlsDir(), 'key.pem')];
    assert.equal(fs.statSync(keyPath).mode & 0o777, 0o600, 'key mode');
    assert.equal(fs.statSync(tlsDir()).mode & 0o777, 0o700, 'folder mode');
    const certPem = fs.readFileSync(certPath);
    const cert = new X509Certificate(certPem);
    assert.equal(cert.fingerprint256, fingerprint, 'the printed fingerprint is the certificate’s');
    assert.ok(cert.checkIP('127.0.0.1'), 'valid for 127.0.0.1');
    assert.ok(cert.checkHost('localhost'), 'valid for localhost');
    assert.doesNotMatch(out, /BEGIN/, 'no PEM is printed');

    // Trusting that certificate: healthz, and /v1 only with the token.
    assert.equal((await httpsCall(`${first.url}/healthz`, { ca: certPem })).status, 200);
    const refused = await httpsCall(`${first.url}/v1/machines`, { ca: certPem });
    assert.equal(refused.status, 401, refused.body);
    const wrong = await httpsCall(`${first.url}/v1/machines`, { ca: certPem, token: `${token}x` });
    assert.equal(wrong.status, 401, wrong.body);
    const ok = await httpsCall(`${first.url}/v1/machines`, { ca: certPem, token });
    assert.equal(ok.status, 200, ok.body);

    // Pinning by fingerprint, as a client without the file would.
    const port = Number(new URL(first.url).port);
    const seen = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.end();
      });
      socket.on('error', reject);
    });
    assert.equal(seen, fingerprint);

    // A client that trusts only the public CAs refuses it: this is TLS, not a formality.
    await assert.rejects(httpsCall(`${first.url}/healthz`), /self[- ]signed/i);
    // Plain HTTP to the TLS port gets no answer from the API: the connection is dropped.
    const plain = await new Promise<string>((resolve) => {
      const req = http.get(`http://127.0.0.1:${port}/v1/machines`, { agent: false }, (res) => {
        res.resume();
        resolve(`answered ${res.statusCode}`);
      });
      req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
    });
    assert.match(plain, /^error (ECONNRESET|EPIPE)/);
  } finally {
    await first.stop();
  }

  // The second start keeps the certificate (same fingerprint) and the token, and prints neither secret.
  const second = await startServe();
  try {
    const out = second.output();
    assert.match(out, new RegExp(`SHA-256 fingerprint: ${fingerprint}`));
    assert.doesNotMatch(out, /made now/);
    assert.ok(!out.includes(token), 'the token is printed only when it is made');
    assert.match(out, /API token: in .*api\/token/);
  } finally {
    await second.stop();
  }

  // A configured pair that is wrong is named with the fix (exit 2), before anything listens.
  const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-tls-'));
  try {
    const otherKey = path.join(otherDir, 'other-key.pem');
    await execFileAsync('openssl', [
      'genpkey',
      '-algorithm',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-out',
      otherKey,
    ]);
    const certPath = path.join(tlsDir(), 'cert.pem');
    for (const [tlsConfig, message] of [
      [
        { certPath: path.join(otherDir, 'none.pem'), keyPath: otherKey },
        /cannot read the API's TLS certificate .*none\.pem: .*Fix: point api\.tls\.certPath at a PEM certificate/,
      ],
      [
        { certPath, keyPath: otherKey },
        /the API's TLS key .*other-key\.pem does not belong to the certificate .*cert\.pem\. Fix: give api\.tls the certificate and its own key/,
      ],
    ] as const) {
      fs.writeFileSync(env.OSR_CONFIG as string, JSON.stringify({ api: { tls: tlsConfig } }));
      const refused = await osr('serve', '--port', '0');
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, message);
    }
  } finally {
    fs.writeFileSync(env.OSR_CONFIG as string, '{}');
    fs.rmSync(otherDir, { recursive: true, force: true });
  }

  // api.insecureHttp serves plain HTTP, and says what that means.
  fs.writeFileSync(env.OSR_CONFIG as string, JSON.stringify({ api: { insecureHttp: true } }));
  try {
    const plain = await startServe();
    try {
      assert.match(plain.url, /^http:\/\//);
      assert.match(plain.output(), /TLS: off \(api\.insecureHttp\)/);
      assert.equal((await fetch(`${plain.url}/healthz`)).status, 200);
    } finally {
      await plain.stop();
    }
  } finally {
    fs.writeFileSync(env.OSR_CONFIG as string, '{}');
  }
});
