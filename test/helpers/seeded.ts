// Slow scenarios under CI=true: a seeded part of them runs (OSR_TEST_SEED replays the pick), the
// rest is left out with a reason that says what ran and how to run all of it (the fault suite's
// short run).

const ci = (): boolean => process.env.CI === 'true';

/** The run's seed: OSR_TEST_SEED, else a random one (printed by the callers, so a run replays). */
export function testSeed(): number {
  return Number(process.env.OSR_TEST_SEED ?? Math.floor(Math.random() * 1_000_000));
}

/**
 * Under CI=true, `count` of `items` in a rotation picked by `seed` (consecutive seeds cover every
 * item); all of them otherwise.
 */
export function seededSubset<T>(items: readonly T[], count: number, seed: number): T[] {
  if (!ci() || count >= items.length) return [...items];
  const start = (seed * count) % items.length;
  return Array.from({ length: count }, (_, i) => items[(start + i) % items.length] as T);
}
