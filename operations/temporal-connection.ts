// Connection options for Temporal: the embedded dev server on loopback by default, or a cluster /
// Temporal Cloud (mTLS or API key) by configuration alone.
import fs from 'node:fs';
import type { OsrConfig } from '../lib/config/config';

export function temporalAddress(config: Pick<OsrConfig, 'temporal'>): string {
  return config.temporal.address ?? `127.0.0.1:${config.temporal.port}`;
}

export function isEmbeddedTemporal(config: Pick<OsrConfig, 'temporal'>): boolean {
  return config.temporal.address === undefined;
}

function read(file: string | undefined): Buffer | undefined {
  return file ? fs.readFileSync(file) : undefined;
}

/** Options shared by client `Connection.connect` and worker `NativeConnection.connect`. */
export function temporalConnectionOptions(config: Pick<OsrConfig, 'temporal'>) {
  const { tls, apiKey } = config.temporal;
  const clientCert = read(tls?.clientCertPath);
  const clientKey = read(tls?.clientKeyPath);
  const useTls = tls !== undefined || apiKey !== undefined;
  return {
    address: temporalAddress(config),
    apiKey,
    tls: useTls
      ? {
          serverNameOverride: tls?.serverName,
          serverRootCACertificate: read(tls?.serverRootCaPath),
          clientCertPair: clientCert && clientKey ? { crt: clientCert, key: clientKey } : undefined,
        }
      : undefined,
  };
}
