// `osr policy create|list`: replication policies.
import type { Command } from 'commander';
import { parseDuration } from '../../shared/policy';
import { createPolicy, listPolicies } from '../../operations/policies';
import type { ReplicationPolicy } from '../../shared/replication-types';
import { withContext } from '../common/context';
import { printJson, printTable } from '../common/output';

const seconds = (s: number) => (s % 3600 === 0 ? `${s / 3600}h` : s % 60 === 0 ? `${s / 60}m` : `${s}s`);

function policyRow(p: ReplicationPolicy) {
  return {
    name: p.name,
    rpo_alert: seconds(p.rpoThresholdSeconds),
    crash_every: seconds(p.crashPointSeconds),
    app_every: p.appPointSeconds === 0 ? 'off' : seconds(p.appPointSeconds),
    retention: `${p.retentionHours}h`,
    keep_all: seconds(p.keepAllMinutes * 60),
  };
}

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
            keepAllMinutes: Math.round(parseDuration(o.keepAll, '--keep-all') / 60),
          }),
        );
        if (o.json) printJson(created);
        else printTable([policyRow(created)]);
      },
    );
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
