// The API token: from api.token, else from api.tokenFile / <stateDir>/api/token, created at the
// first start with 32 random bytes (base64url) and mode 0600 so only the operator can read it.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { OsrConfig } from '../lib/config/config';

export interface ApiToken {
  token: string;
  source: 'config' | 'file' | 'created';
  /** The file it was read from or written to. */
  file?: string;
}

export function defaultTokenFile(config: Pick<OsrConfig, 'stateDir'>): string {
  return path.join(config.stateDir, 'api', 'token');
}

export function resolveApiToken(config: Pick<OsrConfig, 'stateDir' | 'api'>): ApiToken {
  if (config.api.token) return { token: config.api.token, source: 'config' };
  const file = config.api.tokenFile ?? defaultTokenFile(config);
  if (fs.existsSync(file)) {
    const token = fs.readFileSync(file, 'utf8').trim();
    if (token.length < 16)
      throw new Error(
        `the API token file ${file} holds fewer than 16 characters; delete it to have a new token made`,
      );
    return { token, source: 'file', file };
  }
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  // 'wx': if another `osr serve` made the file in the meantime, keep its token.
  try {
    fs.writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return resolveApiToken(config);
    throw err;
  }
  return { token, source: 'created', file };
}
