// Self-signed TLS certificates made with the `openssl` CLI, for the servers OSR runs without a
// configured certificate (`osr serve`, the process servers' agent listener); clients pin them by
// SHA-256 fingerprint.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** A self-signed certificate (EC P-256, 825 days) as cert.pem and key.pem (0600) in `dir`. */
export async function makeSelfSigned(dir: string, organization: string, altNames: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Made in a private temporary folder, then renamed into place: never a half-written pair.
  const temp = fs.mkdtempSync(path.join(dir, '.new-'));
  try {
    const [key, cert] = [path.join(temp, 'key.pem'), path.join(temp, 'cert.pem')];
    // prettier-ignore
    const args = [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-days', '825', '-subj', `/CN=${os.hostname().slice(0, 64)}/O=${organization}`,
      '-addext', `subjectAltName=${altNames}`,
      '-keyout', key, '-out', cert,
    ];
    try {
      await execFileAsync('openssl', args, { timeout: 60_000 });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      throw new Error(
        e.code === 'ENOENT'
          ? 'cannot make a TLS certificate for ${organization}: the `openssl` command is not installed (Debian: `apt-get install openssl`, which `npm run setup` does). Or configure a certificate of your own'
          : `cannot make a TLS certificate for ${organization} with openssl: ${(e.stderr ?? e.message).trim()}`,
      );
    }
    fs.chmodSync(key, 0o600);
    fs.renameSync(key, path.join(dir, 'key.pem'));
    fs.renameSync(cert, path.join(dir, 'cert.pem'));
  } finally {
    fs.rmSync(temp, { recursive: true, force: true });
  }
}
