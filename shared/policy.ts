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

export const policySchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'use lower-case letters, digits and dashes'),
    rpoThresholdSeconds: z.number().int().min(1, 'must be at least 1 second'),
    crashPointSeconds: z.number().int().min(1, 'must be at least 1 second'),
    appPointSeconds: z.number().int().min(0, '0 turns app-consistent points off'),
    retentionHours: z
      .number()
      .min(1 / 60, 'keep points at least one minute')
      .max(24 * 365),
    keepAllMinutes: z.number().int().min(0),
  })
  .strict()
  .refine((p) => p.appPointSeconds === 0 || p.appPointSeconds >= p.crashPointSeconds, {
    message: 'appPointSeconds must be 0 (off) or at least crashPointSeconds',
    path: ['appPointSeconds'],
  });

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

/** Parses "90s", "5m", "1h", "2d" or a number of seconds. */
export function parseDuration(text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new PolicyError(`${what}: "${text}" is not a duration; write e.g. 30s, 5m, 1h or 2d`);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return Math.round(Number(match[1]) * unit);
}
