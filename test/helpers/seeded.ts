// Slow scenarios under CI=true: one of them runs, picked by a seed (OSR_TEST_SEED replays the
// pick), the others are skipped with a reason that says which ran and how to run all of them.

export interface SeededChoice<S extends string> {
  seed: number;
  /** The scenario this run takes under CI (every scenario runs when CI is not set). */
  chosen: S;
  /** Test options: empty when the scenario runs, a skip with its reason otherwise. */
  runs(scenario: S): { skip?: string };
}

export function seededChoice<S extends string>(scenarios: readonly S[], runAll: string): SeededChoice<S> {
  const ci = process.env.CI === 'true';
  const seed = Number(process.env.OSR_TEST_SEED ?? Math.floor(Math.random() * 1_000_000));
  const chosen = scenarios[seed % scenarios.length] as S;
  return {
    seed,
    chosen,
    runs: (scenario) =>
      !ci || scenario === chosen
        ? {}
        : {
            skip: `CI=true runs the ${chosen} (seed ${seed}, OSR_TEST_SEED=${seed} replays it); ${runAll} runs all`,
          },
  };
}
