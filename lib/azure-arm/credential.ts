// The credential ARM calls are signed with: DefaultAzureCredential (managed identity, workload
// identity, service principal, Azure CLI…) in production; or, with azure.tokenFile, a bearer token
// read from a file at every request (written by a sidecar that mints tokens, or a test's stand-in).
import fs from 'node:fs/promises';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { LazyDefaultAzureCredential } from '../azure/default-credential';

/** A token file: its whole content (trimmed) is the token; it is re-read so a rotation takes effect. */
export class TokenFileCredential implements TokenCredential {
  constructor(private readonly file: string) {}

  async getToken(): Promise<AccessToken> {
    const token = (await fs.readFile(this.file, 'utf8')).trim();
    if (!token) throw new Error(`the ARM token file ${this.file} is empty: write a bearer token into it`);
    // Re-read at most every minute by the SDK's token cache.
    return { token, expiresOnTimestamp: Date.now() + 60_000, tokenType: 'Bearer' };
  }
}

export function armCredential(config: { tokenFile?: string }): TokenCredential {
  return config.tokenFile ? new TokenFileCredential(config.tokenFile) : new LazyDefaultAzureCredential();
}
