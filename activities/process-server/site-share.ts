// This process server's share of its site's bandwidth limit (`osr site limit`): the site's limit
// divided evenly by the site's live process servers, counted from their heartbeats in the vault
// (servers/*.json, fresh within health.staleSeconds). The share is even, not by demand: an idle
// process server keeps its share unused. A server that starts or dies changes the count at its
// first heartbeat or once its heartbeat goes stale, so for up to staleSeconds the site may get
// less than its limit (a dead server's share unused), and for a refresh or two a little more.
import type { Vault } from '../../lib/azure/vault';
import type { OsrConfig } from '../../lib/config/config';
import { SERVERS_PREFIX, viewServer, type ServerHeartbeat } from '../../lib/observability/server-health';
import { siteSettingsDoc, type SiteSettings } from '../../shared/site-settings';

export interface SiteShare {
  /** The site's whole limit, bits per second (0: none). */
  siteBitsPerSecond: number;
  /** Live process servers of the site, this one included (at least 1). */
  servers: number;
  /** What this process server may send: siteBitsPerSecond / servers (0: no limit). */
  bitsPerSecond: number;
}

export async function readSiteShare(
  vault: Pick<Vault, 'read' | 'listAged'>,
  config: Pick<OsrConfig, 'site' | 'health'>,
): Promise<SiteShare> {
  const settings = await vault.read<SiteSettings>(siteSettingsDoc(config.site));
  const siteBitsPerSecond = settings?.value.bandwidthLimitBitsPerSecond ?? 0;
  if (siteBitsPerSecond <= 0) return { siteBitsPerSecond: 0, servers: 1, bitsPerSecond: 0 };
  const now = Date.now();
  const live = (await vault.listAged<ServerHeartbeat>(SERVERS_PREFIX))
    .map((d) => viewServer(d.value, config, now, d.ageSeconds))
    .filter((s) => s.role === 'process-server' && s.site === config.site && !s.stale);
  // Before this server's own first heartbeat is on record it still counts itself.
  const servers = Math.max(1, live.length);
  return { siteBitsPerSecond, servers, bitsPerSecond: Math.floor(siteBitsPerSecond / servers) };
}
