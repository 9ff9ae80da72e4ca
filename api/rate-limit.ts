// Rate limits per identity on the routes that change something: a token bucket of `burst`
// requests refilled at `perMinute`. A caller over the limit gets 429 with Retry-After (seconds
// until one request is allowed again); reads are not limited (the dashboard polls them).
import { ApiError } from './errors';

export interface RateLimit {
  perMinute: number;
  burst: number;
}

export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one request from `who`'s bucket, or throws 429. */
  take(who: string): void {
    const perMs = this.limit.perMinute / 60_000;
    const now = this.now();
    const bucket = this.#buckets.get(who) ?? { tokens: this.limit.burst, at: now };
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + (now - bucket.at) * perMs);
    bucket.at = now;
    this.#buckets.set(who, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return;
    }
    const retryAfter = Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
    throw new ApiError(
      429,
      `too many changing requests from ${who}: at most ${this.limit.burst} at once and ${this.limit.perMinute} a minute (api.rateLimit); retry in ${retryAfter} s`,
      'rate-limited',
      { 'Retry-After': String(retryAfter) },
    );
  }
}
