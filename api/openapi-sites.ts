// The OpenAPI description of a site's settings (api/site-routes.ts).
import {
  body,
  closedObject,
  common,
  json,
  ref,
  type Operation,
  type Parameter,
  type Schema,
} from './openapi-common';

const siteName: Parameter = {
  name: 'site',
  in: 'path',
  required: true,
  description: 'site name (lower-case letters, digits and dashes, as in the configuration)',
  schema: { type: 'string', pattern: '^[a-z0-9-]{1,40}$' },
};

export const sitePaths: Record<string, Partial<Record<'get' | 'post', Operation>>> = {
  '/v1/sites/{site}': {
    get: {
      operationId: 'getSite',
      summary: "a site's bandwidth limit and its live process servers (each takes limit / live servers)",
      tags: ['sites'],
      parameters: [siteName],
      responses: { '200': { description: 'the site', ...json(ref('Site')) }, ...common },
    },
  },
  '/v1/sites/{site}/bandwidth-limit': {
    post: {
      operationId: 'setSiteBandwidthLimit',
      summary:
        "limit all replication from the site together; running transfers follow within seconds; a policy's lower limit still applies",
      tags: ['sites'],
      parameters: [siteName],
      requestBody: body(
        closedObject(
          {
            bandwidthLimit: {
              type: 'string',
              pattern: '^(none|0|\\d+(\\.\\d+)?\\s*([kKmMgG]?bit)?(/s)?)$',
              description: 'e.g. 200Mbit, 1Gbit; none: no site limit',
            },
          },
          ['bandwidthLimit'],
        ),
      ),
      responses: { '200': { description: 'the site', ...json(ref('Site')) }, ...common },
    },
  },
};

export const siteSchemas: Record<string, Schema> = {
  Site: {
    type: 'object',
    required: ['site', 'liveProcessServers'],
    properties: {
      site: { type: 'string' },
      bandwidthLimitBitsPerSecond: { type: 'integer', description: '0 or absent: no site limit' },
      updatedAt: { type: 'string', format: 'date-time' },
      liveProcessServers: {
        type: 'integer',
        description: 'process servers of the site with a fresh heartbeat',
      },
    },
  },
};
