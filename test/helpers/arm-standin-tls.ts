// The ARM stand-in's own certificate: a throw-away CA-less self-signed pair for 127.0.0.1, made
// with the openssl command. The process that calls the stand-in trusts exactly this file
// (azure.caFile): TLS checks stay on, as the ARM SDK sends bearer tokens only over HTTPS.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface StandinTls {
  certFile: string;
  keyFile: string;
}

export function makeStandinCertificate(dir: string): StandinTls {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const [keyFile, certFile] = [path.join(dir, 'arm-key.pem'), path.join(dir, 'arm-cert.pem')];
  // prettier-ignore
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=osr-arm-standin', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'ignore', timeout: 60_000 });
  return { certFile, keyFile };
}
