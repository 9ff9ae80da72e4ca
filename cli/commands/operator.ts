// Operator views: `osr alerts` (current alerts), `osr audit` (who did what, when), `osr servers`
// (process-server health from the workers' heartbeats).
import type { Command } from 'commander';
import { listServers } from '../../lib/observability/server-health';
import { listAlerts } from '../../operations/alerts';
import { listAudit } from '../../operations/audit';
import { withContext } from '../common/context';
import { formatBytes } from '../common/progress-bar';
import { CliError, EXIT, printJson, printTable } from '../common/output';

function limitOf(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1000)
    throw new CliError(`--limit: a whole number from 1 to 1000, got ${value}`, EXIT.usage);
  return n;
}

function shortTime(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function registerOperatorCommands(program: Command): void {
  program
    .command('alerts')
    .description(
      'current alerts: machines (RPO, failed cycles, resync needed), failed recovery jobs (24 h), drill boot checks, process servers',
    )
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await withContext((ctx) => listAlerts(ctx));
      if (o.json) return printJson(list);
      printTable(
        list.alerts.map((a) => ({
          at: shortTime(a.at),
          severity: a.severity,
          kind: a.kind,
          about: a.machine ?? a.plan ?? a.server ?? a.workflowId ?? '',
          message: a.message,
        })),
      );
      for (const p of list.problems) process.stderr.write(`osr: not read: ${p}\n`);
    });

  program
    .command('audit')
    .description(
      'the audit log: operator actions from the CLI and the API (who, what, when, outcome), newest first',
    )
    .option('--since <time>', 'ISO time or date (default: 30 days ago)')
    .option('--until <time>', 'ISO time or date (default: now)')
    .option('--action <action>', 'an action (failover.start) or a prefix (failover)')
    .option('--target <name>', 'a machine, plan, policy or job')
    .option(
      '--user <user>',
      'an OS user (CLI), or an API identity (legacy: the single token of earlier releases)',
    )
    .option('--limit <n>', 'at most this many entries', limitOf, 50)
    .option('--json', 'print JSON')
    .action(
      async (o: {
        since?: string;
        until?: string;
        action?: string;
        target?: string;
        user?: string;
        limit: number;
        json?: boolean;
      }) => {
        const entries = await withContext((ctx) => listAudit(ctx, o));
        if (o.json) return printJson(entries);
        printTable(
          entries.map((e) => ({
            at: shortTime(e.at),
            who: `${e.actor.user}${e.actor.claimedOperator ? ` (${e.actor.claimedOperator})` : ''}@${e.actor.via === 'api' ? `api ${e.actor.address ?? ''}`.trim() : e.actor.host}`,
            action: e.action,
            target: e.target,
            outcome: e.outcome === 'ok' ? 'ok' : `${e.outcome}${e.code ? ` (${e.code})` : ''}`,
            details: e.details ? JSON.stringify(e.details) : '',
          })),
        );
      },
    );

  program
    .command('servers')
    .description(
      'OSR worker processes from their heartbeats: CPU, memory, event-loop lag, pipeline backlog; stale ones marked',
    )
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const servers = await withContext((ctx) => listServers(ctx.vault, ctx.config));
      if (o.json) return printJson(servers);
      printTable(
        servers.map((s) => ({
          role: s.role,
          host: s.host,
          pid: s.pid,
          health: s.stale
            ? `STALE (${s.ageSeconds}s)`
            : s.alerts.length
              ? s.alerts.map((a) => a.kind).join(',')
              : 'ok',
          heartbeat: `${s.ageSeconds}s ago`,
          cpu: `${s.cpuPercent}%`,
          memory: formatBytes(s.rssBytes),
          lag: `${s.eventLoopLagMs.p99}ms`,
          activities: s.activitiesInFlight ?? '',
          pipeline: s.pipeline
            ? `${formatBytes(s.pipeline.bytesInFlight)}/${formatBytes(s.pipeline.maxBytesInFlight)}${s.pipeline.waiting ? ` +${s.pipeline.waiting} waiting` : ''}`
            : '',
          throughput: s.pipeline ? `${formatBytes(s.pipeline.throughputBytesPerSecond)}/s` : '',
          // A process server started for hosts (--host) serves only their machines.
          serves: s.hosts ? `hosts ${s.hosts.join(',')}` : `site ${s.site}`,
        })),
      );
      if (servers.some((s) => s.stale)) process.exitCode = EXIT.unavailable;
    });
}
