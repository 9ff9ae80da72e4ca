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
  /** Token buckets by what they limit: `policy:<name>`, or `site`. */
  readonly #buckets = new Map<string, TokenBucket>();
  /** The last reads, by `machine:<name>` (its policy's limit) or `site` (this server's share). */
  readonly #lookups = new Map<string, Lookup<unknown>>();

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
    const [limit, site] = await Promise.all([
      this.#fresh(`machine:${machine}`, () => this.#read(machine)),
      this.#fresh('site', this.siteLimit),
    ]);
    const buckets = [
      limit && this.#bucket(`policy:${limit.policy}`, limit.bitsPerSecond),
      this.#bucket('site', site ?? 0),
    ].filter((b): b is TokenBucket => b !== undefined);
    buckets.sort((a, b) => a.bitsPerSecond - b.bitsPerSecond);
    for (const bucket of buckets) await bucket.take(bytes);
  }

  /** The limit read under `key` within refreshMs, or read now: one read for all lanes. */
  #fresh<T>(key: string, read: () => Promise<T | undefined>): Promise<T | undefined> {
    const seen = this.#lookups.get(key) as Lookup<T> | undefined;
    if (seen && performance.now() - seen.at < this.refreshMs) return seen.found;
    // A failed read keeps the last known limit (a limit never fails a transfer).
    const found = read().catch(() => seen?.found);
    this.#lookups.set(key, { at: performance.now(), found });
    return found;
  }

  /** The bucket of `key` set to the limit read now; undefined when unlimited. */
  #bucket(key: string, bitsPerSecond: number): TokenBucket | undefined {
    let bucket = this.#buckets.get(key);
    if (!bucket && bitsPerSecond > 0) this.#buckets.set(key, (bucket = new TokenBucket(bitsPerSecond)));
    return follow(bucket, bitsPerSecond);
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
