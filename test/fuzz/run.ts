// `npm run fuzz`: the long seeded run of every network-facing parser's fuzzer. Options:
//   --inputs <n> per target (default 20000)  --seed <n> (default 1)  --only <name substring>
// Prints one line per target and, with --json, the reports; exits 1 if anything was found.
import { fuzz, type FuzzReport } from './harness';
import { fuzzTargets } from './targets';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, fallback: string): string => {
    const at = args.indexOf(`--${name}`);
    return at >= 0 && args[at + 1] !== undefined ? args[at + 1]! : fallback;
  };
  const inputs = Number(opt('inputs', '20000'));
  const seed = Number(opt('seed', '1'));
  const only = opt('only', '');
  const reports: FuzzReport[] = [];
  for (const target of fuzzTargets.filter((t) => t.name.includes(only))) {
    const report = await fuzz(target, { seed, inputs });
    reports.push(report);
    process.stdout.write(
      `${target.name}: ${report.inputs} inputs (seed ${seed}), ${report.accepted} accepted, ` +
        `${report.rejected} rejected with a typed error, ${report.findings.length} findings, ${report.ms} ms\n`,
    );
    for (const f of report.findings.slice(0, 20))
      process.stdout.write(`  ${f.kind} at index ${f.index}: ${f.message}\n`);
  }
  if (args.includes('--json')) process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
  if (reports.some((r) => r.findings.length > 0)) process.exitCode = 1;
}

void main();
