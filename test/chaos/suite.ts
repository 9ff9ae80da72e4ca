// One run of the fault suite: a persistent test stack, the steady machine and its writer, then the
// kill trials (each victim in turn, phases in rotation) and the new faults, within a time budget.
// `npm run chaos` (run.ts) and the short seeded run in CI (short-run.test.ts) both call it.
import { ControlContext } from '../../operations/context';
import { startTestStack } from '../helpers/test-stack';
import { Chaos } from './chaos';
import { FaultTrials } from './faults';
import type { Fault, Phase, Trial, Victim } from './trials';

export interface SuiteOptions {
  trialsPerVictim: number;
  maxMinutes: number;
  seed: number;
  victims: Victim[];
  phases: Phase[];
  faults: Fault[];
  /** How long each new fault lasts (default 20 s). */
  faultSeconds?: number;
  log?: (line: string) => void;
}

/** xorshift32: the trials' random moments, reproducible from the seed. */
export function seeded(seed: number): () => number {
  let x = seed | 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

export async function runSuite(o: SuiteOptions): Promise<{ trials: Trial[]; writerRecords: number }> {
  const log = o.log ?? console.log;
  const deadline = Date.now() + o.maxMinutes * 60_000;
  const replay = `npm run chaos -- --seed ${o.seed} --trials ${o.trialsPerVictim} --victims ${o.victims.join(',')} --phases ${o.phases.join(',')} --faults ${o.faults.join(',') || 'none'} --fault-seconds ${o.faultSeconds ?? 20}`;
  log(`chaos: seed ${o.seed}; replay with: ${replay}`);
  const stack = await startTestStack({ persistent: true });
  const ctx = new ControlContext(stack.config);
  const chaos = new Chaos(stack, ctx, seeded(o.seed));
  const faults = new FaultTrials(chaos, (o.faultSeconds ?? 20) * 1000);
  const trials: Trial[] = [];
  const report = (t: Trial) => {
    trials.push(t);
    log(
      `${String(trials.length).padStart(3)} ${t.victim.padEnd(14)} ${t.phase.padEnd(12)} ${t.ok ? 'ok  ' : 'FAIL'} recovery ${(t.recoveryMs / 1000).toFixed(1)} s, ${t.pointsChecked} points, ${t.records ?? 0} records checked, kill landed on ${t.landedOn || '-'}${t.seen ? `; seen: ${t.seen}` : ''}${t.note ? `: ${t.note}` : ''}`,
    );
  };
  // Interrupted (Ctrl-C, a CI time-out): the stack's processes, the namespace and the tmpfs go anyway.
  const onSignal = () =>
    void Promise.allSettled([chaos.tearDown(), stack.stop()])
      .then(() => faults.cleanUp())
      .finally(() => process.exit(130));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    await faults.prepare(o.faults);
    await Promise.all(
      (['control', 'cloud-applier', 'process-server', 'master-target'] as const).map((r) =>
        chaos.startWorker(r),
      ),
    );
    await chaos.setUp();
    outer: for (let i = 0; i < o.trialsPerVictim; i++) {
      for (const victim of o.victims) {
        if (Date.now() > deadline) {
          log(`chaos: time budget spent after ${trials.length} trials`);
          break outer;
        }
        const phase = o.phases[(i + o.victims.indexOf(victim)) % o.phases.length] as Phase;
        report(await chaos.trial(victim, phase));
      }
    }
    for (const fault of o.faults) {
      if (Date.now() > deadline) {
        log(`chaos: time budget spent before fault ${fault}`);
        break;
      }
      report(await faults.trial(fault));
    }
  } finally {
    await chaos.tearDown().catch(() => undefined);
    await ctx.close().catch(() => undefined);
    await stack.stop();
    // After the workers stop: nothing holds the tmpfs or the namespace any more.
    await faults.cleanUp().catch((err) => log(`chaos: fault clean-up: ${(err as Error).message}`));
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
  return { trials, writerRecords: chaos.writer?.acknowledged ?? 0 };
}
