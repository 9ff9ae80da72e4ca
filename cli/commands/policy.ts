// `osr policy create|list|update|delete`: replication policies.
import type { Command } from 'commander';
import { parseBandwidth, parseDuration, policyWarnings } from '../../shared/policy';
import { createPolicy, deletePolicy, listPolicies, updatePolicy } from '../../operations/policies';
import type { ReplicationPolicy } from '../../shared/replication-types';
import { withContext } from '../common/context';
import { CliError, EXIT, printJson, printTable } from '../common/output';

const seconds = (s: number) => (s % 3600 === 0 ? `${s / 3600}h` : s % 60 === 0 ? `${s / 60}m` : `${s}s`);

function policyRow(p: ReplicationPolicy) {
  return {
    name: p.name,
    rpo_alert: seconds(p.rpoThresholdSeconds),
    crash_every: seconds(p.crashPointSeconds),
    app_every: p.appPointSeconds === 0 ? 'off' : seconds(p.appPointSeconds),
    retention: `${p.retentionHours}h`,
    keep_all: seconds(p.keepAllMinutes * 60),
    bandwidth: p.bandwidthLimitBitsPerSecond ? `${p.bandwidthLimitBitsPerSecond / 1e6}Mbit/s` : 'no limit',
  };
}

const BANDWIDTH_HELP =
  'upload limit of all its machines together, per process server, e.g. 50Mbit, 1Gbit, 800kbit; none lifts it';

export function registerPolicyCommands(program: Command): void {
  const policy = program
    .command('policy')
    .description('replication policies: point frequency, RPO alert threshold, retention');
  policy
    .command('create <name>')
    .description('create a named policy (durations like 30s, 5m, 1h, 2d)')
    .option('--rpo <duration>', 'RPO alert threshold', '15m')
    .option('--crash-every <duration>', 'crash-consistent point frequency', '5m')
    .option('--app-every <duration>', 'app-consistent point frequency; 0 turns them off', '60m')
    .option('--retention <duration>', 'how long points are kept', '24h')
    .option('--keep-all <duration>', 'keep every point this recent; older ones thinned to one an hour', '60m')
    .option('--bandwidth-limit <rate>', BANDWIDTH_HELP)
    .option('--json', 'print JSON')
    .action(
      async (
        name: string,
        o: {
          rpo: string;
          crashEvery: string;
          appEvery: string;
          retention: string;
          keepAll: string;
          bandwidthLimit?: string;
          json?: boolean;
        },
      ) => {
        const created = await withContext((ctx) =>
          createPolicy(ctx, {
            name,
            rpoThresholdSeconds: parseDuration(o.rpo, '--rpo'),
            crashPointSeconds: parseDuration(o.crashEvery, '--crash-every'),
            appPointSeconds: parseDuration(o.appEvery, '--app-every'),
            retentionHours: parseDuration(o.retention, '--retention') / 3600,
            keepAllMinutes: wholeMinutes(o.keepAll, '--keep-all'),
            ...(o.bandwidthLimit === undefined
              ? {}
              : { bandwidthLimitBitsPerSecond: parseBandwidth(o.bandwidthLimit, '--bandwidth-limit') }),
          }),
        );
        warn(created);
        if (o.json) printJson(created);
        else printTable([policyRow(created)]);
      },
    );
  policy
    .command('update <name>')
    .description('change a policy; every machine protected with it takes the change at once')
    .option('--rpo <duration>', 'RPO alert threshold')
    .option('--crash-every <duration>', 'crash-consistent point frequency')
    .option('--app-every <duration>', 'app-consistent point frequency; 0 turns them off')
    .option('--retention <duration>', 'how long points are kept')
    .option('--keep-all <duration>', 'keep every point this recent')
    .option('--bandwidth-limit <rate>', BANDWIDTH_HELP)
    .option('--json', 'print JSON')
    .action(
      async (
        name: string,
        o: Partial<
          Record<'rpo' | 'crashEvery' | 'appEvery' | 'retention' | 'keepAll' | 'bandwidthLimit', string>
        > & {
          json?: boolean;
        },
      ) => {
        const changes: Partial<ReplicationPolicy> = {};
        if (o.rpo !== undefined) changes.rpoThresholdSeconds = parseDuration(o.rpo, '--rpo');
        if (o.crashEvery !== undefined)
          changes.crashPointSeconds = parseDuration(o.crashEvery, '--crash-every');
        if (o.appEvery !== undefined) changes.appPointSeconds = parseDuration(o.appEvery, '--app-every');
        if (o.retention !== undefined)
          changes.retentionHours = parseDuration(o.retention, '--retention') / 3600;
        if (o.keepAll !== undefined) changes.keepAllMinutes = wholeMinutes(o.keepAll, '--keep-all');
        if (o.bandwidthLimit !== undefined)
          changes.bandwidthLimitBitsPerSecond = parseBandwidth(o.bandwidthLimit, '--bandwidth-limit');
        if (Object.keys(changes).length === 0)
          throw new CliError(
            'nothing to change: give at least one of --rpo, --crash-every, --app-every, --retention, --keep-all, --bandwidth-limit',
            EXIT.usage,
          );
        const result = await withContext((ctx) => updatePolicy(ctx, name, changes));
        warn(result.policy);
        if (o.json) return printJson(result);
        printTable([policyRow(result.policy)]);
        process.stdout.write(
          `machines updated: ${result.machines.filter((m) => !result.notUpdated.some((n) => n.startsWith(`${m}:`))).join(', ') || 'none'}\n`,
        );
        for (const n of result.notUpdated)
          process.stdout.write(`not running, takes it when protected again: ${n}\n`);
      },
    );
  policy
    .command('delete <name>')
    .description('delete a policy (refused while a machine uses it)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      await withContext((ctx) => deletePolicy(ctx, name));
      if (o.json) printJson({ deleted: name });
      else process.stdout.write(`deleted policy ${name}\n`);
    });
  policy
    .command('list')
    .description('list policies')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const policies = await withContext((ctx) => listPolicies(ctx));
      if (o.json) printJson(policies);
      else printTable(policies.map(policyRow));
    });
}

function wholeMinutes(text: string, what: string): number {
  const seconds = parseDuration(text, what);
  if (seconds % 60 !== 0)
    throw new CliError(`${what}: "${text}" is not a whole number of minutes`, EXIT.usage);
  return seconds / 60;
}

function warn(p: ReplicationPolicy): void {
  for (const w of policyWarnings(p)) process.stderr.write(`osr: warning: ${w}\n`);
}
