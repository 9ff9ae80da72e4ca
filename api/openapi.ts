// The OpenAPI 3.1 document served at /openapi.json, written by hand so it reads as documentation;
// test/unit/openapi.test.ts keeps its paths and methods equal to the router's.
import { failbackPaths, failbackSchemas } from './openapi-failback';
import { machinePaths, machineSchemas } from './openapi-machines';
import { operatorPaths, operatorSchemas } from './openapi-operator';
import { planGroupPaths, planGroupSchemas } from './openapi-plans-groups';
import { recoveryPaths, recoverySchemas } from './openapi-recovery';
import { error, json, type Operation, type Schema } from './openapi-common';
import { jobPaths } from './openapi-jobs';
import { hostPaths, hostSchemas } from './openapi-hosts';
import { sitePaths, siteSchemas } from './openapi-sites';
import { agentPaths, agentSchemas } from './openapi-agents';
import { identityPaths, identitySchemas } from './openapi-identity';
import { accessOf } from './access';
import { approvalPaths, approvalSchemas, awaitingApproval } from './openapi-approvals';

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  servers: Array<{ url: string }>;
  security: Array<Record<string, string[]>>;
  paths: Record<string, Partial<Record<'get' | 'post', Operation>>>;
  components: { securitySchemes: Record<string, Schema>; schemas: Record<string, Schema> };
}

const document: OpenApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Open Site Recovery API',
    version: '1',
    description:
      'Served by `osr serve`. Every /v1 route needs `Authorization: Bearer <token>`: a token from `osr tokens create <name> --role viewer|operator|admin`, or the single token of earlier releases (api.token or the token file `osr serve` creates at first start), which is the admin identity `legacy`. Each operation names the role it needs (`x-osr-role`, from api/access.ts); a weaker role gets 403 naming the role needed and the one held. Changing (POST) operations are rate-limited per identity (429 with Retry-After). Long jobs answer 202 with a Location under /v1/jobs to follow their progress.',
  },
  servers: [{ url: '/' }],
  security: [{ bearer: [] }],
  paths: {
    ...operatorPaths,
    ...failbackPaths,
    '/healthz': {
      get: {
        operationId: 'health',
        summary: 'liveness of the API server (no auth)',
        tags: ['meta'],
        security: [],
        responses: {
          '200': { description: 'up', ...json({ type: 'object', properties: { ok: { const: true } } }) },
        },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'this document (no auth)',
        tags: ['meta'],
        security: [],
        responses: { '200': { description: 'OpenAPI 3.1 document', ...json({ type: 'object' }) } },
      },
    },
    ...machinePaths,
    ...jobPaths,
    ...planGroupPaths,
    ...hostPaths,
    ...sitePaths,
    ...agentPaths,
    ...recoveryPaths,
    ...identityPaths,
    ...approvalPaths,
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      ...operatorSchemas,
      ...failbackSchemas,
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: { code: { type: 'string' }, message: { type: 'string' } },
          },
        },
      },
      ...machineSchemas,
      ...planGroupSchemas,
      ...hostSchemas,
      ...siteSchemas,
      ...agentSchemas,
      ...recoverySchemas,
      ...identitySchemas,
      ...approvalSchemas,
    },
  },
};

/**
 * Each operation's role, from the one table (api/access.ts), and the refusals every operation of
 * its kind may answer: 403 below its role, 429 over the rate limit (POST), 413 for a body too large.
 */
function withAccess(doc: OpenApiDocument): OpenApiDocument {
  for (const [path, ops] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(ops) as Array<[string, Operation]>) {
      const access = accessOf(method.toUpperCase(), path);
      if (access === undefined || access === 'public') continue;
      (op as Operation & { 'x-osr-role': string })['x-osr-role'] = access;
      op.description = `Needs the ${access} role (or higher).${op.description ? ` ${op.description}` : ''}`;
      op.responses['403'] = error(`the identity's role is below ${access}; the message names both`);
      if (method === 'post') {
        op.responses['413'] = error('the body is larger than api.maxBodyBytes (the message names the limit)');
        op.responses['429'] = {
          ...error('too many changing requests from this identity (api.rateLimit)'),
          headers: { 'Retry-After': { description: 'seconds to wait', schema: { type: 'integer' } } },
        };
      }
    }
  return doc;
}

/** The operations that may wait for a second identity's approval answer 202 then. */
for (const [path, method] of [
  ['/v1/plans/{name}/failover', 'post'],
  ['/v1/plan-jobs/{job}/commit', 'post'],
  ['/v1/machines/{name}/failover/commit', 'post'],
] as const) {
  const op = document.paths[path]?.[method];
  if (op) Object.assign(op.responses, awaitingApproval);
}

export const openApiDocument: OpenApiDocument = withAccess(document);
