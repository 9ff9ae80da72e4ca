// The fault suite (`npm run chaos`): kill -9 an OSR worker, the Temporal server (restarted on its
// SQLite file) or Azurite (restarted on its folder) at a random moment of an initial sync, of delta
// cycles, of a drill or of a reprotect, on loopback only (victim `handover`: one of two process
// servers, not restarted, handover.ts), then the new faults (faults.ts). A writer
// runs on the steady machine through everything; every point cut during a trial must hold every
// record acknowledged before its instant and none from after it; first points, drill disks and
// failbacks are compared byte for byte with their source.
//
//   npm run chaos -- [--trials 20] [--max-minutes 60] [--seed 1] [--victims process-server,azurite]
//                    [--phases initial-sync,delta,drill,reprotect] [--faults throttle,disk-full,...|none]
//                    [--fault-seconds 20]
//   (reprotect, and the master-target victim, take a failover round trip per trial: about a minute each)
import { parseArgs } from 'node:util';
import { runSuite } from './suite';
import { FAULTS, PHASES, printTable, VICTIMS, type Fault, type Phase, type Victim } from './trials';

const { values: args } = parseArgs({
  options: {
    trials: { type: 'string', default: '20' },
    'max-minutes': { type: 'string', default: '60' },
    seed: { type: 'string', default: String(Date.now() % 100000) },
    victims: { type: 'string', default: VICTIMS.filter((v) => v !== 'master-target').join(',') },
    phases: { type: 'string', default: PHASES.filter((p) => p !== 'reprotect').join(',') },
    faults: { type: 'string', default: FAULTS.join(',') },
    'fault-seconds': { type: 'string', default: '20' },
  },
});

function listOf<T extends string>(value: string, allowed: readonly T[], what: string): T[] {
  const items = value === 'none' ? [] : (value.split(',') as T[]);
  for (const i of items)
    if (!allowed.includes(i)) throw new Error(`unknown ${what} ${i}: use ${allowed.join(', ')}`);
  return items;
}

async function main(): Promise<void> {
  const { trials, writerRecords } = await runSuite({
    trialsPerVictim: Number(args.trials),
    maxMinutes: Number(args['max-minutes']),
    seed: Number(args.seed),
    victims: listOf<Victim>(args.victims as string, VICTIMS, 'victim'),
    phases: listOf<Phase>(args.phases as string, PHASES, 'phase'),
    faults: listOf<Fault>(args.faults as string, FAULTS, 'fault'),
    faultSeconds: Number(args['fault-seconds']),
  });
  console.log('');
  printTable(trials);
  const failed = trials.filter((t) => !t.ok).length;
  console.log(
    `\nchaos: ${trials.length} trials, ${failed} failed, ${writerRecords} records written (seed ${args.seed})`,
  );
  process.exitCode = failed ? 1 : 0;
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
