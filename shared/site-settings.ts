// A site's settings in the vault (sites/<site>.json): the bandwidth limit of all replication from
// the site's process servers together. Process servers read it every few seconds, so a change
// reaches transfers that are running. Pure: no I/O.
import { vaultSegment } from './names';
import { PolicyError } from './policy';

export interface SiteSettings {
  site: string;
  /** Bits per second for the whole site; 0 or absent: no site limit (policies' limits still apply). */
  bandwidthLimitBitsPerSecond?: number;
  updatedAt?: string;
}

export const siteSettingsDoc = (site: string) => `sites/${vaultSegment('site name', site)}.json`;

/** The lowest limit, as for a policy's: below it a 4 MiB segment takes minutes. */
const MIN_BANDWIDTH = 100_000;

/** Refuses a limit that is neither 0 (none) nor at least 100 kbit/s; returns it otherwise. */
export function checkSiteLimit(bitsPerSecond: number): number {
  if (!Number.isInteger(bitsPerSecond) || (bitsPerSecond !== 0 && bitsPerSecond < MIN_BANDWIDTH))
    throw new PolicyError(
      `the site bandwidth limit is none (0) or at least 100kbit, got ${bitsPerSecond} bit/s; below that a 4 MiB segment takes minutes`,
    );
  return bitsPerSecond;
}
