// Protecting machines: `osr protect|status|points|point|resync|pause|resume|unprotect|set-policy`.
import path from 'node:path';
import type { Command } from 'commander';
import { OperationError, type ControlContext } from '../../operations/context';
import { endedHealth, endedProtection } from '../../operations/health';
import * as machines from '../../operations/machines';
import type { ProtectSource } from '../../operations/protect-source';
import { readinessLines } from '../../shared/azure-readiness';
import type { MachineStatus } from '../../shared/contracts/protect-machine';
import type { MachinePlatform } from '../../shared/replication-types';
import { withContext } from '../common/context';
import { formatBytes, ProgressLine, renderBar } from '../common/progress-bar';
import { CliError, EXIT, printJson, printTable } from '../common/output';

function ago(iso: string | undefined): string {
  if (!iso) return '';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

function progressText(status: MachineStatus): string | undefined {
  if (!status.progress?.length) return undefined;
  const done = status.progress.reduce((a, p) => a + p.bytesDone, 0);
  const total = status.progress.reduce((a, p) => a + p.bytesTotal, 0);
  return `${renderBar(done, total)} ${formatBytes(done)} / ${formatBytes(total)} (${status.progress.map((p) => `${p.diskId} ${p.mode}`).join(', ')})`;
}

function printStatus(status: MachineStatus): void {
  printTable([
    {
      machine: status.machine,
      state: status.state,
      health: status.health?.level ?? '',
      rpo: status.rpoSeconds === undefined ? '' : `${status.rpoSeconds}s`,
      threshold: `${status.policy.rpoThresholdSeconds}s`,
      last_point: status.lastPoint ? `${status.lastPoint.id} (${ago(status.lastPoint.instant)})` : '',
      last_app_point: status.lastAppPoint ? ago(status.lastAppPoint.instant) : '',
      policy: status.policy.name,
      cycles: status.stats.cycles,
    },
  ]);
  process.stdout.write('\n');
  printTable(
    status.disks.map((d) => ({
      disk: d.diskId,
      size: formatBytes(d.sizeBytes),
      synced: d.synced ? 'yes' : 'no',
      next: d.nextMode,
      note: d.excluded,
    })),
  );
  if (status.health && status.health.level !== 'healthy') {
    process.stdout.write(`\nhealth: ${status.health.level}\n`);
    for (const r of status.health.reasons) process.stdout.write(`  - ${r}\n`);
  }
  if (status.azureReadiness) process.stdout.write(`\n${readinessLines(status.azureReadiness).join('\n')}\n`);
  const progress = progressText(status);
  if (progress) process.stdout.write(`\nsync: ${progress}\n`);
  if (status.failing) {
    const f = status.failing;
    process.stdout.write(
      `\nfailing: ${f.failures} cycle(s) in a row since ${f.since}; next try ${f.retryAt}: ${f.reason}\n`,
    );
  }
  if (status.alerts.length) {
    process.stdout.write('\nalerts:\n');
    for (const a of status.alerts) {
      const seen = a.count && a.count > 1 ? ` (${a.count} times, last ${a.lastAt})` : '';
      process.stdout.write(`  [${a.severity}] ${a.at} ${a.kind}: ${a.message}${seen}\n`);
    }
  }
}

/** --qmp (a QEMU process), --host with --domain (a libvirt domain) or --agent, one of them. */
function protectSource(o: {
  qmp?: string;
  nbd?: string;
  host?: string;
  domain?: string;
  agent?: string;
}): ProtectSource {
  if (o.agent) {
    if (o.qmp || o.host || o.domain || o.nbd)
      throw new OperationError(
        '--agent names the machine by its Mobility agent: give no --qmp, --nbd, --host or --domain with it',
        'invalid',
      );
    return { agentId: o.agent };
  }
  if (o.qmp && o.domain)
    throw new OperationError(
      'give either --qmp (a QEMU process) or --host and --domain (a libvirt domain), not both',
      'invalid',
    );
  if (o.qmp)
    return {
      qmpSocket: path.resolve(o.qmp),
      nbdSocket: o.nbd ? path.resolve(o.nbd) : undefined,
      host: o.host,
    };
  if (o.host && o.domain) return { host: o.host, domain: o.domain };
  throw new OperationError(
    o.host || o.domain
      ? `--${o.host ? 'domain' : 'host'} is missing: a libvirt domain is named by --host <name> --domain <domain>`
      : 'say what to protect: --qmp <socket> for a QEMU process, or --host <name> --domain <domain> for a libvirt domain',
    'invalid',
  );
}

export function registerMachineCommands(program: Command): void {
  program
    .command('protect <name>')
    .description(
      'protect a QEMU machine (--qmp), a libvirt domain (--host, --domain) or a machine with the Mobility agent (--agent): initial sync into replica page blobs, then a recovery point every policy interval',
    )
    .option(
      '--qmp <socket>',
      'QMP monitor socket of the VM or qemu-storage-daemon (without it, --host and --domain: protect a machine the vault knows again, from its record)',
    )
    .option(
      '--host <name>',
      "an added host (`osr host add`): the machine is served by that host's process servers; with --domain, a domain of that libvirt host",
    )
    .option('--domain <name>', 'the libvirt domain on that host (`virsh list --all`)')
    .option(
      '--agent <id>',
      'an enrolled Mobility agent (`osr agent list`): its machine is tracked inside (device-mapper era and snapshots); protect disks that are not mounted (--disks vdb), used as /dev/mapper/osr-<disk>',
    )
    .option(
      '--nbd <socket>',
      'socket of the NBD server already running in that QEMU process (qemu-storage-daemon --nbd-server)',
    )
    .option(
      '--disks <ids>',
      "comma-separated disks to protect: QEMU block node names, libvirt target devs or the agent machine's kernel names (vda …); default: all",
    )
    .option('--policy <name>', 'replication policy', 'default')
    .option(
      '--guest-agent <socket>',
      "host-side socket of the VM's QEMU guest agent: app-consistent points freeze its filesystems, and protect checks the guest's Azure readiness through it",
    )
    .option(
      '--pre <command>',
      'command that quiesces the application before an app-consistent point (with --agent: run on the machine by the agent)',
    )
    .option('--post <command>', 'command that thaws it afterwards (always run)')
    .option('--os-type <type>', 'Linux or Windows: the OS of an Azure VM recovered from it', 'Linux')
    .option(
      '--hyperv-generation <gen>',
      'V1 (BIOS boot, QEMU default) or V2 (UEFI): the Hyper-V generation of an Azure VM recovered from it',
      'V1',
    )
    .option('--json', 'print JSON')
    .action(
      async (
        name: string,
        o: {
          osType: string;
          hypervGeneration: string;
          qmp?: string;
          host?: string;
          domain?: string;
          agent?: string;
          nbd?: string;
          disks?: string;
          policy: string;
          guestAgent?: string;
          pre?: string;
          post?: string;
          json?: boolean;
        },
      ) => {
        const result = await withContext(async (ctx) => {
          if (!o.qmp && !o.host && !o.domain && !o.agent) {
            if (o.nbd || o.disks || o.guestAgent || o.pre || o.post)
              throw new CliError(
                `--nbd, --disks, --guest-agent, --pre and --post describe a new machine: give its --qmp <socket> too (without --qmp, \`osr protect ${name}\` protects a machine the vault knows from its record)`,
                EXIT.usage,
              );
            const again = await machines.protectFromVault(ctx, name);
            return { ...again, state: await machines.enableOutcome(ctx, name) };
          }
          const started = await machines.protect(ctx, {
            name,
            ...protectSource(o),
            disks: o.disks
              ?.split(',')
              .map((d) => d.trim())
              .filter(Boolean),
            policy: o.policy,
            platform: {
              osType: o.osType as MachinePlatform['osType'],
              hyperVGeneration: o.hypervGeneration as MachinePlatform['hyperVGeneration'],
            },
            quiesce:
              o.guestAgent || o.pre || o.post
                ? {
                    guestAgentSocket: o.guestAgent ? path.resolve(o.guestAgent) : undefined,
                    pre: o.pre,
                    post: o.post,
                  }
                : undefined,
          });
          // Its disks found and tracking on, or the process server's reason why not.
          return { ...started, state: await machines.enableOutcome(ctx, name) };
        });
        if (o.json) printJson(result);
        else
          process.stdout.write(
            result.state === 'enabling'
              ? `protecting ${name}: workflow ${result.workflowId}, still enabling after 30 s: is a process server of site ${result.machine.site} running (\`osr doctor\`)? Follow it with \`osr status ${name}\`\n`
              : `protecting ${name}: workflow ${result.workflowId}, ${result.state}; follow it with \`osr status ${name}\`\n`,
          );
      },
    );

  program
    .command('status [name]')
    .description(
      'state, RPO, last points and alerts of every protected machine, or of one (with a live progress bar during a sync on a terminal)',
    )
    .option('--json', 'print JSON')
    .option('--no-follow', 'do not follow a running sync')
    .action(async (name: string | undefined, o: { json?: boolean; follow: boolean }) => {
      await withContext(async (ctx) => {
        if (!name) {
          const all = await machines.listMachines(ctx);
          if (o.json) return printJson(all);
          return printTable(
            all.map((m) => ({
              machine: m.machine,
              state: m.status?.state ?? m.ended?.state ?? 'unknown',
              health: (m.status?.health ?? m.health)?.level ?? '',
              rpo: m.status?.rpoSeconds === undefined ? '' : `${m.status.rpoSeconds}s`,
              last_point: ago(m.status?.lastPoint?.instant),
              alerts: m.status?.alerts.length ?? '',
              note: m.note,
            })),
          );
        }
        let status: MachineStatus;
        try {
          status = await machines.machineStatus(ctx, name);
        } catch (err) {
          // Its protection was ended outside OSR: say so, why, and how to clean up.
          // A workflow that failed by itself (its enable step) keeps its refusal, which says why.
          const ended = await endedProtection(ctx, name).catch(() => undefined);
          if (!ended || ended.state === 'failed') throw err;
          const health = endedHealth(ended);
          if (o.json) return printJson({ machine: name, ...ended, health });
          process.stdout.write(
            `${name}: ${ended.state} (workflow ${ended.workflowId} ${ended.closedAs}${ended.closedAt ? ` at ${ended.closedAt}` : ''})\nhealth: critical\n  - ${ended.reason}\nfix: ${ended.fix}\n`,
          );
          return;
        }
        if (o.json) return printJson(status);
        const line = new ProgressLine();
        const syncing = (s: MachineStatus) =>
          s.state === 'initial-sync' || s.state === 'resyncing' || s.state === 'enabling';
        if (o.follow && process.stdout.isTTY && syncing(status)) {
          while (syncing(status)) {
            line.update(`${name} ${status.state} ${progressText(status) ?? 'starting…'}`);
            await new Promise((r) => setTimeout(r, 1000));
            status = await machines.machineStatus(ctx, name);
          }
          line.done(`${name}: ${status.state}`);
        }
        printStatus(status);
      });
    });

  program
    .command('points <name>')
    .description(
      "a machine's recovery points, oldest first in the order they were cut (`source clock`: the primary's own reading, where it differs)",
    )
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const points = await withContext((ctx) => machines.listPoints(ctx, name));
      if (o.json) printJson(points);
      else
        printTable(
          points.map((p) => ({
            id: p.id,
            instant: p.instant,
            'source clock': p.sourceInstant !== p.instant ? p.sourceInstant : undefined,
            kind: p.kind,
            tag: p.tag,
            disks: p.disks.map((d) => d.diskId).join(','),
          })),
        );
    });

  program
    .command('point <name>')
    .description('cut a recovery point now and wait until it is published')
    .option('--app', 'app-consistent (runs the quiesce commands)')
    .option('--tag <text>', 'a label kept with the point')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { app?: boolean; tag?: string; json?: boolean }) => {
      const point = await withContext((ctx) =>
        machines.takePoint(ctx, name, { kind: o.app ? 'app' : 'crash', tag: o.tag }),
      );
      if (o.json) printJson(point);
      else process.stdout.write(`recovery point ${point.id} (${point.kind}) at ${point.instant}\n`);
    });

  const simple: Array<[string, string, (ctx: ControlContext, name: string) => Promise<MachineStatus>]> = [
    [
      'resync',
      'compare block checksums of source and replica and send only the differences',
      machines.resync,
    ],
    [
      'pause',
      'stop cutting points (tracking goes on: nothing is lost, the next cycle sends it)',
      (ctx, n) => machines.pause(ctx, n),
    ],
    ['resume', 'resume a paused machine', machines.resume],
  ];
  for (const [command, description, run] of simple) {
    program
      .command(`${command} <name>`)
      .description(description)
      .option('--json', 'print JSON')
      .action(async (name: string, o: { json?: boolean }) => {
        const status = await withContext((ctx) => run(ctx, name));
        if (o.json) printJson(status);
        else process.stdout.write(`${name}: ${command} accepted; state ${status.state}\n`);
      });
  }

  program
    .command('set-policy <name> <policy>')
    .description("change a protected machine's replication policy")
    .option('--json', 'print JSON')
    .action(async (name: string, policy: string, o: { json?: boolean }) => {
      const status = await withContext((ctx) => machines.changePolicy(ctx, name, policy));
      if (o.json) printJson(status);
      else process.stdout.write(`${name}: policy ${status.policy.name}\n`);
    });

  program
    .command('unprotect <name>')
    .description(
      "stop protecting a machine: removes its change tracking (dirty bitmaps, or the agent's device-mapper stack), and its replica and points unless --keep-replica",
    )
    .option('--keep-replica', 'keep the replica disks and recovery points')
    .action(async (name: string, o: { keepReplica?: boolean }) => {
      const status = await withContext((ctx) =>
        machines.unprotect(ctx, name, { keepReplica: o.keepReplica }),
      );
      process.stdout.write(`${name}: ${status.state}${o.keepReplica ? ' (replica kept)' : ''}\n`);
    });
}
