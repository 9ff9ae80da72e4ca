// Bearer-token check. Both sides are hashed before the comparison so it takes the same time
// whatever the token's length or where it first differs.
import { createHash, timingSafeEqual } from 'node:crypto';
import { ApiError } from './errors';

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

export function authorize(header: string | undefined, token: string): void {
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '');
  const ok = match !== null && timingSafeEqual(digest(match[1] as string), digest(token));
  if (!ok)
    throw new ApiError(
      401,
      match
        ? 'the bearer token is not valid; use the token `osr serve` printed (or api.token)'
        : 'authentication required: send Authorization: Bearer <token>',
      'unauthorized',
      { 'WWW-Authenticate': `Bearer realm="osr"${match ? ', error="invalid_token"' : ''}` },
    );
}
