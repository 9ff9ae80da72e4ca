// Temporal inside the trust boundary. The embedded dev server listens on loopback only (every
// socket it listens on, the Web UI's too, read from /proc). And the workers and the CLI work with a
// Temporal frontend that requires mutual TLS: the dev server of Temporal CLI 1.5.1 has no TLS
// options, so a TLS-terminating proxy (node:tls, client certificate required) stands in front of
// its gRPC port, as a load balancer or Temporal's own frontend TLS would; without the client
// certificate, or without TLS, OSR cannot reach it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { freePort, isPortOpen } from '../../lib/process/ports';
import { stopPid } from '../../lib/process/managed-process';
import { startTemporalDevServer } from '../../temporal-dev/dev-server';
import { runCli } from '../helpers/cli';
import { projectRoot, startTestStack, type TestStack } from '../helpers/test-stack';

let stack: TestStack;
let dir: string;

before(async () => {
  stack = await startTestStack();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-temporal-tls-'));
});

after(async () => {
  await stack?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Listening TCP sockets of a process: "address:port" from /proc/net/tcp{,6} by its socket inodes. */
function listening(pid: number): string[] {
  const inodes = new Set(
    fs
      .readdirSync(`/proc/${pid}/fd`)
      .map((fd) => {
        try {
          return /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        } catch {
          return undefined;
        }
      })
      .filter((i): i is string => i !== undefined),
  );
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9] as string)) continue;
      const [hex, port] = (f[1] as string).split(':') as [string, string];
      const address =
        hex.length === 8
          ? (hex.match(/../g) as string[])
              .reverse()
              .map((b) => parseInt(b, 16))
              .join('.')
          : hex === '00000000000000000000000001000000'
            ? '::1'
            : `[${hex}]`;
      out.push(`${address}:${parseInt(port, 16)}`);
    }
  }
  return out;
}

test('the embedded Temporal dev server and its Web UI listen on 127.0.0.1 only', async () => {
  const [port, uiPort] = [await freePort(), await freePort()];
  const server = await startTemporalDevServer({
    binary: path.join(projectRoot, '.osr', 'bin', 'temporal'),
    port,
    uiPort,
    namespace: 'default',
    logFile: path.join(dir, 'dev-server.log'),
  });
  try {
    const sockets = listening(server.pid);
    assert.ok(sockets.includes(`127.0.0.1:${port}`), sockets.join(' '));
    assert.ok(sockets.includes(`127.0.0.1:${uiPort}`), sockets.join(' '));
    for (const s of sockets) assert.match(s, /^127\.0\.0\.1:\d+$/, `listens beyond loopback: ${s}`);
    // And from this host's other addresses, nothing answers on those ports.
    const others = Object.values(os.networkInterfaces())
      .flat()
      .filter((a) => a && a.family === 'IPv4' && !a.internal)
      .map((a) => a?.address as string);
    for (const address of others) {
      assert.equal(await isPortOpen(port, address), false, `${address}:${port}`);
      assert.equal(await isPortOpen(uiPort, address), false, `${address}:${uiPort}`);
    }
  } finally {
    await stopPid(server.pid);
  }
});

function makeCertificates(): Record<'ca' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey', string> {
  const f = (name: string) => path.join(dir, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=osr test CA',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
  );
  for (const [who, ext] of [
    ['server', 'subjectAltName=DNS:temporal.osr.test\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    fs.writeFileSync(f(`${who}.ext`), `${ext}\n`);
    ssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      `/CN=osr-${who}`,
      '-keyout',
      f(`${who}.key`),
      '-out',
      f(`${who}.csr`),
    );
    ssl(
      'x509',
      '-req',
      '-in',
      f(`${who}.csr`),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      f(`${who}.ext`),
      '-out',
      f(`${who}.pem`),
    );
  }
  return {
    ca: f('ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
  };
}

test('workers and the CLI work through a frontend that requires mutual TLS, and nothing reaches it without', async () => {
  const certs = makeCertificates();
  const seen = { authorized: 0, refused: 0 };
  const proxy = tls.createServer(
    {
      cert: fs.readFileSync(certs.serverCert),
      key: fs.readFileSync(certs.serverKey),
      ca: fs.readFileSync(certs.ca),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (socket) => {
      seen.authorized++;
      const upstream = net.connect(stack.config.temporal.port, '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      const end = () => {
        socket.destroy();
        upstream.destroy();
      };
      socket.on('error', end);
      upstream.on('error', end);
    },
  );
  proxy.on('tlsClientError', () => seen.refused++);
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
  const configFile = (name: string, temporalTls?: Record<string, string>) => {
    const file = path.join(dir, name);
    const temporal = { address, ...(temporalTls ? { tls: temporalTls } : {}) };
    fs.writeFileSync(file, JSON.stringify({ temporal }));
    return { ...stack.env, OSR_CONFIG: file };
  };
  const mtls = configFile('mtls.json', {
    serverName: 'temporal.osr.test',
    serverRootCaPath: certs.ca,
    clientCertPath: certs.clientCert,
    clientKeyPath: certs.clientKey,
  });
  try {
    for (const role of ['control', 'process-server', 'cloud-applier', 'master-target'] as const)
      await stack.startWorker(role, { OSR_CONFIG: mtls.OSR_CONFIG });
    const workersConnected = seen.authorized;
    assert.ok(workersConnected >= 4, `${workersConnected} mTLS connections from 4 workers`);
    const doctor = await runCli(['doctor', '--json', '--wait', '30'], mtls);
    assert.equal(doctor.code, 0, doctor.stderr);
    const result = JSON.parse(doctor.stdout) as { ok: boolean; probes: Array<{ result?: { role: string } }> };
    assert.equal(result.ok, true, doctor.stdout);
    assert.deepEqual(
      result.probes.map((p) => p.result?.role),
      ['control', 'process-server', 'cloud-applier', 'master-target'],
    );
    assert.ok(seen.authorized > workersConnected, 'the CLI came through the mTLS frontend too');

    // Without the client certificate the handshake is refused; without TLS nothing answers.
    const refusedBefore = seen.refused;
    const noCert = configFile('no-client-cert.json', {
      serverName: 'temporal.osr.test',
      serverRootCaPath: certs.ca,
    });
    const plain = configFile('plain.json');
    for (const env of [noCert, plain]) {
      const r = await runCli(['doctor', '--json', '--wait', '5'], env, { timeout: 120_000 });
      assert.notEqual(r.code, 0, r.stdout);
      assert.match(r.stderr, /Cannot reach Temporal at 127\.0\.0\.1:\d+ .*temporal\.tls/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
    assert.ok(seen.refused > refusedBefore, 'the proxy refused a handshake without a client certificate');
  } finally {
    for (const role of ['control', 'process-server', 'cloud-applier', 'master-target'] as const)
      await stack.killWorker(role).catch(() => undefined);
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
  }
});
