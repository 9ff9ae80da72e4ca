// Runs a fuzz target over seeded inputs and sorts every outcome: accepted, rejected with the
// parser's typed error (both fine), or a finding: an untyped error, an uncaught exception (what
// would crash a worker) or a hang. Input `index` of `seed` is always the same bytes, so a finding
// is replayed with replayInput(target, seed, index).
import { Rng } from './random';
import { withTimeout } from '../../lib/qemu/qmp-client';

export type Verdict = 'accepted' | 'rejected';

export interface FuzzTarget {
  /** The parser under test, as counted in BENCHMARKS / docs/fuzzing.md. */
  name: string;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  /** Feeds one generated input; resolves with the verdict, throws what the parser threw otherwise. */
  run(rng: Rng): Promise<Verdict>;
  /** Whether an error is the parser's typed rejection. */
  isTyped(err: unknown): boolean;
  /** An input that takes longer is a hang. */
  timeoutMs?: number;
}

export interface Finding {
  target: string;
  seed: number;
  index: number;
  kind: 'untyped' | 'crash' | 'hang';
  message: string;
}

export interface FuzzReport {
  target: string;
  seed: number;
  inputs: number;
  accepted: number;
  rejected: number;
  findings: Finding[];
  ms: number;
}

export function inputRng(seed: number, index: number): Rng {
  return new Rng(seed * 1_000_003 + index);
}

export async function fuzz(
  target: FuzzTarget,
  options: { seed: number; inputs: number; budgetMs?: number },
): Promise<FuzzReport> {
  const report: FuzzReport = {
    target: target.name,
    seed: options.seed,
    inputs: 0,
    accepted: 0,
    rejected: 0,
    findings: [],
    ms: 0,
  };
  const started = Date.now();
  let index = 0;
  let crashed: unknown;
  const onCrash = (err: unknown): void => {
    crashed ??= err;
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  await target.setup?.();
  try {
    for (; index < options.inputs; index++) {
      if (options.budgetMs !== undefined && Date.now() - started > options.budgetMs) break;
      crashed = undefined;
      const finding = (kind: Finding['kind'], err: unknown): void => {
        report.findings.push({
          target: target.name,
          seed: options.seed,
          index,
          kind,
          message: describe(err),
        });
      };
      try {
        const verdict = await withTimeout(
          target.run(inputRng(options.seed, index)),
          target.timeoutMs ?? 5000,
          () => new Hang(`no outcome within ${target.timeoutMs ?? 5000} ms`),
        );
        report[verdict]++;
      } catch (err) {
        if (err instanceof Hang) finding('hang', err);
        else if (target.isTyped(err)) report.rejected++;
        else finding('untyped', err);
      }
      // Let late socket events of this input land before the next one starts.
      await new Promise((r) => setImmediate(r));
      if (crashed !== undefined) finding('crash', crashed);
      report.inputs++;
    }
  } finally {
    await target.teardown?.();
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  }
  report.ms = Date.now() - started;
  return report;
}

class Hang extends Error {}

function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`.slice(0, 300);
  return String(err).slice(0, 300);
}
