// The process server's bandwidth limits per policy: one token bucket per policy, shared by every
// transfer of the machines protected with it on this process server. The limit is read from the
// vault (the machine's record names its policy) and read again every few seconds, so
// `osr policy update <p> --bandwidth-limit …` reaches transfers that are running.
import type { Vault } from '../../lib/azure/vault';
import { TokenBucket } from '../../lib/net/token-bucket';

interface Lookup {
  at: number;
  found: Promise<{ policy: string; bitsPerSecond: number } | undefined>;
}

export class BandwidthLimits {
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #lookups = new Map<string, Lookup>();

  constructor(
    private readonly vault: Pick<Vault, 'machine' | 'policy'>,
    private readonly refreshMs = 2000,
  ) {}

  /** Resolves when `bytes` of `machine`'s upload may go. */
  async take(machine: string, bytes: number): Promise<void> {
    const limit = await this.#limit(machine);
    if (!limit || limit.bitsPerSecond <= 0) return;
    let bucket = this.#buckets.get(limit.policy);
    if (!bucket) this.#buckets.set(limit.policy, (bucket = new TokenBucket(limit.bitsPerSecond)));
    else if (bucket.bitsPerSecond !== limit.bitsPerSecond) bucket.setRate(limit.bitsPerSecond);
    await bucket.take(bytes);
  }

  #limit(machine: string): Lookup['found'] {
    const seen = this.#lookups.get(machine);
    if (seen && performance.now() - seen.at < this.refreshMs) return seen.found;
    // One read for all lanes; a failed read keeps the last known limit (a limit never fails a transfer).
    const found = this.#read(machine).catch(() => seen?.found);
    this.#lookups.set(machine, { at: performance.now(), found });
    return found;
  }

  async #read(machine: string): Promise<{ policy: string; bitsPerSecond: number } | undefined> {
    const record = await this.vault.machine(machine);
    if (!record) return undefined;
    const policy = await this.vault.policy(record.policy);
    return { policy: record.policy, bitsPerSecond: policy?.bandwidthLimitBitsPerSecond ?? 0 };
  }
}
