// The load run's flags (bench/load.ts): defaults, parsing and the refusal of a bad one.

export interface Options {
  machines: number;
  minutes: number;
  warmupSeconds: number;
  diskMiB: number;
  dataMiB: number;
  crashEvery: number;
  rpo: number;
  writeKiBPerSecond: number;
  processServers: number;
  maxCyclesPerRun: number;
  heartbeatSeconds: number;
  write: boolean;
}

export function parseOptions(argv: string[]): Options {
  const o: Options = {
    machines: 50,
    minutes: 10,
    warmupSeconds: 60,
    diskMiB: 16,
    dataMiB: 4,
    crashEvery: 30,
    rpo: 90,
    writeKiBPerSecond: 32,
    processServers: 2,
    // Lower than the product's 100 so a 10-minute window sees runs roll over (continueAsNew); the
    // per-cycle event count it reports projects the run length at any setting.
    maxCyclesPerRun: 10,
    heartbeatSeconds: 5,
    write: true,
  };
  const keys: Record<string, keyof Options> = {
    '--machines': 'machines',
    '--minutes': 'minutes',
    '--warmup-seconds': 'warmupSeconds',
    '--disk-mib': 'diskMiB',
    '--data-mib': 'dataMiB',
    '--crash-every': 'crashEvery',
    '--rpo': 'rpo',
    '--write-kib-per-second': 'writeKiBPerSecond',
    '--process-servers': 'processServers',
    '--max-cycles-per-run': 'maxCyclesPerRun',
    '--heartbeat-seconds': 'heartbeatSeconds',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--no-write') {
      o.write = false;
      continue;
    }
    if (arg === '--help') {
      console.log(`flags: ${Object.keys(keys).join(' ')} --no-write`);
      process.exit(0);
    }
    const key = keys[arg];
    const value = Number(argv[i + 1]);
    if (!key || !Number.isFinite(value) || value <= 0) {
      console.error(`bad flag ${arg} ${argv[i + 1] ?? ''}; flags: ${Object.keys(keys).join(' ')} --no-write`);
      process.exit(2);
    }
    (o as unknown as Record<string, number>)[key] = value;
    i++;
  }
  if (o.dataMiB > o.diskMiB) o.dataMiB = o.diskMiB;
  return o;
}
