// The API's TLS certificate: the one configured (api.tls), or a self-signed one that `osr serve`
// makes at its first start under <stateDir>/api/tls (key mode 0600) with the `openssl` CLI, so the
// API never speaks plain HTTP unless api.insecureHttp says so. Clients pin the certificate by its
// SHA-256 fingerprint, which `osr serve` prints at every start.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, type OsrConfig } from '../lib/config/config';
import { makeSelfSigned } from '../lib/config/self-signed';

export interface ApiTls {
  certPath: string;
  keyPath: string;
  /** SHA-256 of the certificate (DER), colon-separated hex, as browsers and `openssl x509 -fingerprint` show it. */
  fingerprint256: string;
  validTo: string;
  /** configured: api.tls; created: made now; existing: made at an earlier start. */
  source: 'configured' | 'created' | 'existing';
}

export function defaultTlsDir(config: Pick<OsrConfig, 'stateDir'>): string {
  return path.join(config.stateDir, 'api', 'tls');
}

function describe(certPath: string, keyPath: string, source: ApiTls['source']): ApiTls {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(fs.readFileSync(certPath));
  } catch (err) {
    throw new ConfigError(
      `cannot read the API's TLS certificate ${certPath}: ${(err as Error).message}. Fix: point api.tls.certPath at a PEM certificate${source === 'configured' ? '' : `, or delete ${path.dirname(certPath)} to have a new one made`}`,
    );
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(fs.readFileSync(keyPath)));
  } catch (err) {
    throw new ConfigError(
      `cannot read the API's TLS key ${keyPath}: ${(err as Error).message}. Fix: point api.tls.keyPath at the certificate's PEM private key (unencrypted)`,
    );
  }
  if (!matches)
    throw new ConfigError(
      `the API's TLS key ${keyPath} does not belong to the certificate ${certPath}. Fix: give api.tls the certificate and its own key`,
    );
  return { certPath, keyPath, fingerprint256: cert.fingerprint256, validTo: cert.validTo, source };
}

/** Names the certificate should hold: loopback, this host, and the listen address when specific. */
export function subjectAltNames(listenHost: string | undefined): string {
  const names = new Set(['DNS:localhost', 'IP:127.0.0.1', 'IP:::1', `DNS:${os.hostname()}`]);
  if (listenHost && !['0.0.0.0', '::', ''].includes(listenHost))
    names.add(net.isIP(listenHost) ? `IP:${listenHost}` : `DNS:${listenHost}`);
  return [...names].join(',');
}

/**
 * The certificate `osr serve` uses, or undefined for plain HTTP (api.insecureHttp). A self-signed
 * certificate that expired is replaced (clients that pinned it must pin the new fingerprint).
 */
export async function resolveApiTls(
  config: Pick<OsrConfig, 'stateDir' | 'api'>,
  listenHost?: string,
): Promise<ApiTls | undefined> {
  if (config.api.tls) return describe(config.api.tls.certPath, config.api.tls.keyPath, 'configured');
  if (config.api.insecureHttp) return undefined;
  const dir = defaultTlsDir(config);
  const [certPath, keyPath] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  if (fs.existsSync(certPath) && fs.existsSync(keyPath)) {
    const existing = describe(certPath, keyPath, 'existing');
    if (Date.parse(existing.validTo) > Date.now()) return existing;
  }
  await makeSelfSigned(dir, 'Open Site Recovery API', subjectAltNames(listenHost ?? config.api.host));
  return describe(certPath, keyPath, 'created');
}
