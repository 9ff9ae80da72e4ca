// The OpenAPI 3.1 document served at /openapi.json, written by hand so it reads as documentation;
// test/unit/openapi.test.ts keeps its paths and methods equal to the router's.
import { failbackPaths, failbackSchemas } from './openapi-failback';
import { machinePaths, machineSchemas } from './openapi-machines';
import { operatorPaths, operatorSchemas } from './openapi-operator';
import { planGroupPaths, planGroupSchemas } from './openapi-plans-groups';
import { recoveryPaths, recoverySchemas } from './openapi-recovery';
import { json, type Operation, type Schema } from './openapi-common';
import { jobPaths } from './openapi-jobs';
import { hostPaths, hostSchemas } from './openapi-hosts';

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  servers: Array<{ url: string }>;
  security: Array<Record<string, string[]>>;
  paths: Record<string, Partial<Record<'get' | 'post', Operation>>>;
  components: { securitySchemes: Record<string, Schema>; schemas: Record<string, Schema> };
}

export const openApiDocument: OpenApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Open Site Recovery API',
    version: '1',
    description:
      'Served by `osr serve`. Every /v1 route needs `Authorization: Bearer <token>` (api.token, or the token file `osr serve` creates and names at first start). Long jobs answer 202 with a Location under /v1/jobs to follow their progress.',
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
    ...recoveryPaths,
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
      ...recoverySchemas,
    },
  },
};
