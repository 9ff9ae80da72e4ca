// Who is calling, and may they: the bearer token names an identity with a role (operations/
// tokens.ts); the route's role comes from api/access.ts. 401 for no or a wrong token, 403 naming
// the role needed and the one held. No message ever repeats the token.
import type { TokenInfo, TokenVerifier } from '../operations/tokens';
import { allows, type Access } from './access';
import { ApiError } from './errors';

const REFUSED = {
  unknown:
    'the bearer token is not valid; use a token from `osr tokens create` (or the one `osr serve` printed)',
  revoked: 'the bearer token was revoked; ask an admin for a new one (`osr tokens create`)',
  expired: 'the bearer token has expired; ask an admin for a new one (`osr tokens create`)',
};

export async function authenticate(header: string | undefined, verifier: TokenVerifier): Promise<TokenInfo> {
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '');
  if (!match)
    throw new ApiError(401, 'authentication required: send Authorization: Bearer <token>', 'unauthorized', {
      'WWW-Authenticate': 'Bearer realm="osr"',
    });
  const result = await verifier.verify(match[1] as string);
  if ('refused' in result)
    throw new ApiError(401, REFUSED[result.refused], 'unauthorized', {
      'WWW-Authenticate': 'Bearer realm="osr", error="invalid_token"',
    });
  return result.identity;
}

export function authorize(identity: TokenInfo, needed: Access, what: string): void {
  if (!allows(identity.role, needed))
    throw new ApiError(
      403,
      `${what} needs the ${needed} role; identity ${identity.name} holds ${identity.role}`,
      'forbidden',
    );
}
