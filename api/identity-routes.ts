// Routes about identities: who am I (the dashboard learns its role and what it may do from it)
// and the admin's token management, the same operations as `osr tokens`.
import { createToken, listTokens, revokeToken, type TokenInfo } from '../operations/tokens';
import { parseDuration } from '../shared/policy';
import { allows, accessOf, routeKey } from './access';
import { onlyFields, optionalDuration, optionalEnum, requiredString } from './body';
import { ApiError } from './errors';
import type { ApiResponse, Route } from './router';
import { ROLES } from '../shared/roles';

const ok = (body: unknown): ApiResponse => ({ status: 200, body });

/** The routes the identity may call, as "METHOD /path" keys, from the access table. */
function allowedRoutes(identity: TokenInfo, all: readonly Route[]): string[] {
  return all
    .filter((r) => {
      const access = accessOf(r.method, r.path);
      return access !== undefined && access !== 'public' && allows(identity.role, access);
    })
    .map((r) => routeKey(r.method, r.path));
}

export function identityRoutes(all: () => readonly Route[]): Route[] {
  return [
    {
      method: 'GET',
      path: '/v1/me',
      handler: (req) => {
        const identity = req.identity as TokenInfo;
        return ok({
          name: identity.name,
          role: identity.role,
          ...(identity.expiresAt ? { expiresAt: identity.expiresAt } : {}),
          allowed: allowedRoutes(identity, all()),
        });
      },
    },
    {
      method: 'GET',
      path: '/v1/tokens',
      handler: async (req) => ok({ tokens: await listTokens(req.ctx) }),
    },
    {
      method: 'POST',
      path: '/v1/tokens',
      handler: async (req) => {
        const body = await req.body();
        onlyFields(body, ['name', 'role', 'expiresIn']);
        const name = requiredString(body, 'name', 'the identity: a person or system, e.g. "alice" or "ci"');
        const role = optionalEnum(body, 'role', ROLES);
        if (role === undefined)
          throw new ApiError(
            400,
            `field "role": missing; use ${ROLES.map((r) => `"${r}"`).join(', ')}`,
            'invalid',
          );
        const expiresInSeconds = optionalDuration(body, 'expiresIn', (t) => parseDuration(t, 'expiresIn'));
        const made = await createToken(req.ctx, { name, role, expiresInSeconds });
        // The secret is in this answer only: it is not stored anywhere it could be read back.
        return { status: 201, body: { ...made.token, token: made.secret } };
      },
    },
    {
      method: 'POST',
      path: '/v1/tokens/{name}/revoke',
      handler: async (req) => {
        onlyFields(await req.body(), []);
        return ok(await revokeToken(req.ctx, req.params.name as string));
      },
    },
  ];
}
