// The process server's bandwidth limits: one token bucket per policy, shared by every transfer of
// the machines protected with it on this process server, and one for the site (this server's
// share of `osr site limit`, site-share.ts), shared by every transfer here. An upload waits for
// both, the stricter first, so the stricter of the two applies. Limits are read from the vault and read again every
// few seconds, so `osr policy update <p> --bandwidth-limit …` and `osr site limit …` reach
// transfers that are running.
import type { Vault } from '../../lib/azure/vault';
import { TokenBucket } from '../../lib/net/token-bucket';

interface Lookup<T> {
  at: number;
  found: Promise<T | undefined>;
}

type PolicyLimit = { policy: string; bitsPerSecond: number };

export class BandwidthLimits {
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #lookups = new Map<string, Lookup<PolicyLimit>>();
  #site?: Lookup<number>;
  #siteBucket?: TokenBucket;

  constructor(
    private readonly vault: Pick<Vault, 'machine' | 'policy'>,
    /** This process server's share of its site's limit, bits per second (0: none). */
    private readonly siteLimit: () => Promise<number> = async () => 0,
    private readonly refreshMs = 2000,
  ) {}

  /**
   * Resolves when `bytes` of `machine`'s upload may go: through the stricter bucket first, then the
   * other. Uploads wait in the stricter one without having paid the other, so when it is lifted
   * (its waiting takes go at once) they still pay the other one in turn, at its rate.
   */
  async take(machine: string, bytes: number): Promise<void> {
    const [limit, site] = await Promise.all([this.#limit(machine), this.#siteShare()]);
    const buckets: TokenBucket[] = [];
    if (limit) {
      let bucket = this.#buckets.get(limit.policy);
      if (!bucket && limit.bitsPerSecond > 0)
        this.#buckets.set(limit.policy, (bucket = new TokenBucket(limit.bitsPerSecond)));
      const limited = follow(bucket, limit.bitsPerSecond);
      if (limited) buckets.push(limited);
    }
    if (!this.#siteBucket && site && site > 0) this.#siteBucket = new TokenBucket(site);
    const siteLimited = follow(this.#siteBucket, site ?? 0);
    if (siteLimited) buckets.push(siteLimited);
    buckets.sort((a, b) => a.bitsPerSecond - b.bitsPerSecond);
    for (const bucket of buckets) await bucket.take(bytes);
  }

  #limit(machine: string): Lookup<PolicyLimit>['found'] {
    const seen = this.#lookups.get(machine);
    if (seen && performance.now() - seen.at < this.refreshMs) return seen.found;
    // One read for all lanes; a failed read keeps the last known limit (a limit never fails a transfer).
    const found = this.#read(machine).catch(() => seen?.found);
    this.#lookups.set(machine, { at: performance.now(), found });
    return found;
  }

  #siteShare(): Lookup<number>['found'] {
    const seen = this.#site;
    if (seen && performance.now() - seen.at < this.refreshMs) return seen.found;
    const found = this.siteLimit().catch(() => seen?.found);
    this.#site = { at: performance.now(), found };
    return found;
  }

  async #read(machine: string): Promise<PolicyLimit | undefined> {
    const record = await this.vault.machine(machine);
    if (!record) return undefined;
    const policy = await this.vault.policy(record.policy);
    return { policy: record.policy, bitsPerSecond: policy?.bandwidthLimitBitsPerSecond ?? 0 };
  }
}

/**
 * Sets the bucket to the limit read now, 0 included: takes already waiting in it follow the change
 * (a lifted limit lets them go within a second). Returns the bucket to take from, if limited.
 */
function follow(bucket: TokenBucket | undefined, bitsPerSecond: number): TokenBucket | undefined {
  if (bucket && bucket.bitsPerSecond !== bitsPerSecond) bucket.setRate(bitsPerSecond);
  return bitsPerSecond > 0 ? bucket : undefined;
}
