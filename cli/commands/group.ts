// Multi-VM consistency groups: `osr group create|list|show|points|point|set-interval|delete`.
import type { Command } from 'commander';
import * as groups from '../../operations/groups';
import type { GroupStatus } from '../../shared/contracts/consistency-group';
import { withContext } from '../common/context';
import { CliError, EXIT, printJson, printTable } from '../common/output';

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new CliError(`expected a number of seconds, got ${value}`, EXIT.usage);
  return n;
}

function printStatus(s: GroupStatus): void {
  process.stdout.write(
    `group ${s.group}: ${s.state}${s.phase ? ` (${s.phase})` : ''}, a point every ${s.intervalSeconds} s\n` +
      `members: ${s.machines.join(', ')}\n` +
      `last point: ${s.lastPoint ? `${s.lastPoint.id} at ${s.lastPoint.instant}, RPO ${s.rpoSeconds ?? '?'} s` : 'none yet'}\n` +
      `write barrier: ${s.barrier ? `last ${s.barrier.last} ms, mean ${s.barrier.mean} ms, max ${s.barrier.max} ms over ${s.barrier.count} cuts` : 'not measured yet'}\n` +
      `cuts: ${s.stats.cuts} done, ${s.stats.skipped} skipped, ${s.stats.failed} failed\n`,
  );
  for (const a of s.alerts) process.stdout.write(`${a.severity}: ${a.message}\n`);
}

export function registerGroupCommands(program: Command): void {
  const cmd = program
    .command('group')
    .description('multi-VM consistency groups: recovery points that are one consistent cut across machines');

  cmd
    .command('create <name>')
    .description(
      "group protected machines; each cut holds all members' writes briefly (QMP stop/cont, virsh suspend/resume, guest agent, quiesce commands or the Mobility agent, which must be this release's: `osr agent upgrade` an outdated one first)",
    )
    .requiredOption('--machines <names>', 'comma-separated protected machines (at least two, one site)')
    .option('--interval <seconds>', 'how often a group point is cut (default 300)', seconds)
    .option('--json', 'print JSON')
    .action(async (name: string, o: { machines: string; interval?: number; json?: boolean }) => {
      const machines = o.machines
        .split(',')
        .map((m) => m.trim())
        .filter(Boolean);
      const status = await withContext((ctx) =>
        groups.createGroup(ctx, { name, machines, intervalSeconds: o.interval }),
      );
      if (o.json) return printJson(status);
      printStatus(status);
    });

  cmd
    .command('list')
    .description('the consistency groups')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await withContext((ctx) => groups.listGroups(ctx));
      if (o.json) return printJson(list);
      printTable(
        list.map((g) => ({
          group: g.name,
          machines: g.machines.join(', '),
          interval: g.intervalSeconds,
          site: g.site,
        })),
      );
    });

  cmd
    .command('show <name>')
    .description("a group's state, last point, barrier lengths and alerts")
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const status = await withContext((ctx) => groups.groupStatus(ctx, name));
      if (o.json) return printJson(status);
      printStatus(status);
    });

  cmd
    .command('points <name>')
    .description("a group's points: one recovery point per member, all from one cut")
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const points = await withContext((ctx) => groups.groupPoints(ctx, name));
      if (o.json) return printJson(points);
      printTable(
        points.map((p) => ({
          id: p.id,
          instant: p.instant,
          'barrier ms': p.barrierMs,
          members: p.members.map((m) => `${m.machine}=${m.pointId}`).join(' '),
        })),
      );
    });

  cmd
    .command('point <name>')
    .description('cut a group point now and wait until every member published its point')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const point = await withContext((ctx) => groups.takeGroupPoint(ctx, name));
      if (o.json) return printJson(point);
      process.stdout.write(
        `group point ${point.id} at ${point.instant} (writes held ${point.barrierMs} ms)\n`,
      );
    });

  cmd
    .command('set-interval <name> <seconds>')
    .description('change how often the group cuts a point')
    .option('--json', 'print JSON')
    .action(async (name: string, value: string, o: { json?: boolean }) => {
      const status = await withContext((ctx) => groups.setGroupInterval(ctx, name, seconds(value)));
      if (o.json) return printJson(status);
      printStatus(status);
    });

  cmd
    .command('delete <name>')
    .description('end the group: members go back to their own policies; its points stay')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const status = await withContext((ctx) => groups.deleteGroup(ctx, name));
      if (o.json) return printJson(status);
      process.stdout.write(`group ${name} deleted; its ${status.stats.cuts} points stay in the catalog\n`);
    });
}
