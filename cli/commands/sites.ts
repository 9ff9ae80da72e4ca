// `osr site show|limit`: a site's settings; for now the bandwidth limit of all of its replication
// together (its process servers share it evenly, each taking limit / live process servers).
import type { Command } from 'commander';
import { parseBandwidth } from '../../shared/policy';
import { getSite, setSiteBandwidthLimit, type SiteView } from '../../operations/sites';
import { withContext } from '../common/context';
import { printJson, printTable } from '../common/output';

function siteRow(s: SiteView) {
  const limit = s.bandwidthLimitBitsPerSecond;
  return {
    site: s.site,
    bandwidth: limit ? `${limit / 1e6}Mbit/s` : 'no limit',
    live_process_servers: s.liveProcessServers,
    each: limit ? `${Math.floor(limit / Math.max(1, s.liveProcessServers)) / 1e6}Mbit/s` : '-',
  };
}

export function registerSiteCommands(program: Command): void {
  const site = program
    .command('site')
    .description("a site's settings: the bandwidth limit of all replication from its process servers");
  site
    .command('show [site]')
    .description("the site (default: this configuration's) with its limit and live process servers")
    .option('--json', 'print JSON')
    .action(async (name: string | undefined, o: { json?: boolean }) => {
      const view = await withContext((ctx) => getSite(ctx, name ?? ctx.config.site));
      if (o.json) printJson(view);
      else printTable([siteRow(view)]);
    });
  site
    .command('limit <rate>')
    .description(
      'limit all replication from the site together, e.g. 200Mbit, 1Gbit; none lifts it. Takes effect within seconds; a policy limit lower than it still applies',
    )
    .option('--site <site>', "the site (default: this configuration's)")
    .option('--json', 'print JSON')
    .action(async (rate: string, o: { site?: string; json?: boolean }) => {
      const bits = parseBandwidth(rate, 'rate');
      const view = await withContext((ctx) => setSiteBandwidthLimit(ctx, o.site ?? ctx.config.site, bits));
      if (o.json) printJson(view);
      else printTable([siteRow(view)]);
    });
}
