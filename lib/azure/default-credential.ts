// DefaultAzureCredential, loaded the first time a token is asked for: @azure/identity and MSAL take
// about a quarter of a second to load, which every `osr` command paid though only Entra ID
// sign-in to storage and ARM calls use them.
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/core-auth';

export class LazyDefaultAzureCredential implements TokenCredential {
  private inner?: Promise<TokenCredential>;

  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken | null> {
    this.inner ??= import('@azure/identity').then(
      ({ DefaultAzureCredential }) => new DefaultAzureCredential(),
    );
    return (await this.inner).getToken(scopes, options);
  }
}
