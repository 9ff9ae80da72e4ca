// Replication policies: validation with errors that name the field and the fix.
import { z } from 'zod';
import type { ReplicationPolicy } from './replication-types';

export const DEFAULT_POLICY: ReplicationPolicy = {
  name: 'default',
  rpoThresholdSeconds: 15 * 60,
  crashPointSeconds: 5 * 60,
  appPointSeconds: 60 * 60,
  retentionHours: 24,
  keepAllMinutes: 60,
};

/** The lowest bandwidth limit, bits per second (0 means none). */
const MIN_BANDWIDTH = 100_000;

const wholeSeconds = (what: string, min: number, minMessage: string) =>
  z
    .number({ error: `${what} must be a number of seconds` })
    .int({ error: `${what} must be a whole number of seconds (fractions are not rounded)` })
    .min(min, { error: minMessage });

export const policySchema = z
  .object({
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'use lower-case letters, digits and dashes (at most 63)'),
    rpoThresholdSeconds: wholeSeconds('the RPO threshold', 1, 'the RPO threshold must be at least 1 second'),
    crashPointSeconds: wholeSeconds('the crash-point interval', 1, 'points must be at least 1 second apart'),
    appPointSeconds: wholeSeconds('the app-point interval', 0, '0 turns app-consistent points off'),
    retentionHours: z
      .number({ error: 'retention must be a number of hours' })
      .min(1 / 60, { error: 'keep points at least one minute' })
      .max(24 * 365, { error: 'retention is at most a year (8760 h)' }),
    keepAllMinutes: z
      .number({ error: 'keep-all must be a number of minutes' })
      .int({ error: 'keep-all must be a whole number of minutes' })
      .min(0, { error: 'keep-all cannot be negative' }),
    bandwidthLimitBitsPerSecond: z
      .number({ error: 'the bandwidth limit must be a number of bits per second' })
      .int({ error: 'the bandwidth limit must be a whole number of bits per second' })
      .refine((b) => b === 0 || b >= MIN_BANDWIDTH, {
        error:
          'the bandwidth limit is 0 (none) or at least 100kbit; below that a 4 MiB segment takes minutes',
      })
      .optional(),
  })
  .strict()
  .refine((p) => p.appPointSeconds === 0 || p.appPointSeconds >= p.crashPointSeconds, {
    message: 'appPointSeconds must be 0 (off) or at least crashPointSeconds',
    path: ['appPointSeconds'],
  })
  .refine((p) => p.rpoThresholdSeconds <= p.retentionHours * 3600, {
    message:
      'the RPO threshold is longer than retention: points would be pruned before the RPO alert could fire; keep points longer or lower the threshold',
    path: ['rpoThresholdSeconds'],
  });

/** Parses "50Mbit", "1.5Gbit", "800kbit", "2000000" (bits per second) or "0"/"none" (no limit). */
export function parseBandwidth(text: string, what: string): number {
  const t = text.trim();
  if (t === 'none' || t === '0') return 0;
  const match = /^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)?(?:\/s)?$/i.exec(t);
  if (!match)
    throw new PolicyError(
      `${what}: "${text}" is not a rate; write e.g. 50Mbit, 1Gbit or 800kbit (per second), or none`,
    );
  const unit = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 }[(match[2] ?? 'bit').toLowerCase() as 'bit'];
  return Math.round(Number(match[1]) * unit);
}

export class PolicyError extends Error {
  override name = 'PolicyError';
}

export function validatePolicy(input: unknown): ReplicationPolicy {
  const result = policySchema.safeParse(input);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || 'policy'}: ${i.message}`);
    throw new PolicyError(`Invalid replication policy: ${problems.join('; ')}`);
  }
  return result.data;
}

/**
 * What is valid but likely a mistake, with the reason (printed, not refused: a policy whose points
 * are cut only on request still wants an RPO alert as a watchdog).
 */
export function policyWarnings(p: ReplicationPolicy): string[] {
  const out: string[] = [];
  if (p.crashPointSeconds > p.rpoThresholdSeconds) {
    out.push(
      `points every ${p.crashPointSeconds} s with an RPO threshold of ${p.rpoThresholdSeconds} s: the RPO alert fires before every scheduled point unless points are asked for; cut points more often or raise the threshold`,
    );
  }
  return out;
}

/** Parses "90s", "5m", "1h", "2d" or a number of seconds. */
export function parseDuration(text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new PolicyError(`${what}: "${text}" is not a duration; write e.g. 30s, 5m, 1h or 2d`);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  const seconds = Number(match[1]) * unit;
  // Refused, not rounded: 1.5s silently becoming 2 s is not what the operator asked for.
  if (!Number.isInteger(seconds))
    throw new PolicyError(
      `${what}: "${text}" is not a whole number of seconds; round it yourself (e.g. 90s for 1.5m is fine, 1.5s is not)`,
    );
  return seconds;
}
