// Routes for a site's settings (operations/sites.ts): the same operations as `osr site show|limit`.
import { getSite, setSiteBandwidthLimit } from '../operations/sites';
import { checkName } from '../shared/names';
import { parseBandwidth } from '../shared/policy';
import { onlyFields, requiredString } from './body';
import type { Route } from './router';

export const siteRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/sites/{site}',
    handler: async (req) => ({ status: 200, body: await getSite(req.ctx, req.params.site as string) }),
  },
  {
    method: 'POST',
    path: '/v1/sites/{site}/bandwidth-limit',
    handler: async (req) => {
      const site = checkName('site', req.params.site);
      const body = await req.body();
      onlyFields(body, ['bandwidthLimit']);
      const rate = requiredString(body, 'bandwidthLimit', 'a rate like 200Mbit or 1Gbit, or none');
      const view = await setSiteBandwidthLimit(req.ctx, site, parseBandwidth(rate, 'bandwidthLimit'));
      return { status: 200, body: view };
    },
  },
];
