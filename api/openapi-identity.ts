// The OpenAPI description of the identity routes (api/identity-routes.ts): who am I, and the
// admin's tokens. Merged into api/openapi.ts's document.
import { body, closedObject, common, error, json, listOf, machineName, object, ref } from './openapi-common';

const tokenInfo = object(
  {
    name: 'string',
    role: { type: 'string', enum: ['viewer', 'operator', 'admin'] },
    createdAt: 'date-time',
    createdBy: 'string',
    expiresAt: 'date-time',
    lastUsedAt: 'date-time',
    revokedAt: 'date-time',
    revokedBy: 'string',
  },
  'an API identity; the secret is never listed',
);

export const identityPaths = {
  '/v1/me': {
    get: {
      operationId: 'me',
      summary: 'the identity the bearer token names, its role, and the routes it may call',
      tags: ['identities'],
      responses: {
        '200': {
          description: 'the caller',
          ...json(
            object({
              name: 'string',
              role: 'string',
              expiresAt: 'date-time',
              allowed: { type: 'array', items: { type: 'string' }, description: '"METHOD /path" keys' },
            }),
          ),
        },
        ...common,
      },
    },
  },
  '/v1/tokens': {
    get: {
      operationId: 'listTokens',
      summary: 'the API identities: name, role, created, last used, expiry, revoked (never the secret)',
      tags: ['identities'],
      responses: { '200': { description: 'tokens', ...listOf('tokens', 'TokenInfo') }, ...common },
    },
    post: {
      operationId: 'createToken',
      summary: 'make a token for a person or system; the secret is in this answer only',
      tags: ['identities'],
      requestBody: body(
        closedObject(
          {
            name: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
            role: { type: 'string', enum: ['viewer', 'operator', 'admin'] },
            expiresIn: { description: 'seconds, or "90d", "12h"; none: never', type: ['integer', 'string'] },
          },
          ['name', 'role'],
        ),
      ),
      responses: {
        '201': {
          description: 'made',
          ...json({ allOf: [ref('TokenInfo'), object({ token: 'string' })] }),
        },
        ...common,
        '409': error('the identity already has a live token; revoke it first'),
      },
    },
  },
  '/v1/tokens/{name}/revoke': {
    post: {
      operationId: 'revokeToken',
      summary:
        'revoke an identity\'s token (at once; "legacy" turns off the single token of earlier releases)',
      tags: ['identities'],
      parameters: [{ ...machineName, description: 'identity name' }],
      responses: {
        '200': { description: 'revoked', ...json(ref('TokenInfo')) },
        ...common,
        '404': error('no token for that identity'),
      },
    },
  },
};

export const identitySchemas = { TokenInfo: tokenInfo };
