// Sites' settings in the vault: for now the bandwidth limit of all of a site's replication
// together (`osr site limit`, PUT /v1/sites/{site}). Process servers read it every 2 s: a change
// reaches transfers that are running, without a restart. How several process servers share it:
// activities/process-server/bandwidth.ts.
import { checkName } from '../shared/names';
import { checkSiteLimit, siteSettingsDoc, type SiteSettings } from '../shared/site-settings';
import { listServers } from '../lib/observability/server-health';
import { audited } from './audit';
import type { ControlContext } from './context';

export interface SiteView extends SiteSettings {
  /** Process servers of the site with a fresh heartbeat: each takes limit / this many. */
  liveProcessServers: number;
}

/** A site's settings (a site never configured has none) and its live process servers. */
export async function getSite(ctx: ControlContext, site: string): Promise<SiteView> {
  checkName('site', site);
  const settings = (await ctx.vault.read<SiteSettings>(siteSettingsDoc(site)))?.value ?? { site };
  const servers = await listServers(ctx.vault, ctx.config);
  const live = servers.filter((s) => s.role === 'process-server' && s.site === site && !s.stale);
  return { ...settings, liveProcessServers: live.length };
}

export const setSiteBandwidthLimit = audited(
  'site.limit',
  async (ctx: ControlContext, site: string, bitsPerSecond: number): Promise<SiteView> => {
    checkName('site', site);
    checkSiteLimit(bitsPerSecond);
    await ctx.vault.update<SiteSettings>(siteSettingsDoc(site), (current) => ({
      ...current,
      site,
      bandwidthLimitBitsPerSecond: bitsPerSecond,
      updatedAt: new Date().toISOString(),
    }));
    return getSite(ctx, site);
  },
  (_ctx, site, bitsPerSecond) => ({ target: site, details: { bandwidthLimitBitsPerSecond: bitsPerSecond } }),
);
