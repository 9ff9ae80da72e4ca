// Recovery of single machines: `osr failover test|cleanup|start|commit|change-point|status|configure`.
import type { Command } from 'commander';
import * as failover from '../../operations/failover';
import type { AzureDiskType, RecoverySettings } from '../../shared/recovery-types';
import type { RecoveryChange } from '../../operations/recovery-settings';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { withContext } from '../common/context';
import { CliError, EXIT, printJson, printTable } from '../common/output';

function printRecovery(status: RecoveryStatus): void {
  printTable([
    {
      job: status.job,
      kind: status.kind,
      machine: status.machine,
      state: status.state,
      point: status.point ? `${status.point.id} (${status.point.kind}, ${status.point.instant})` : '',
    },
  ]);
  if (status.cleanedUp)
    process.stdout.write(
      `\ncleaned up${status.cleanedUp.at ? ` at ${status.cleanedUp.at}` : ''} by ${status.cleanedUp.workflowId}: the drill's disks, local copies and record are removed\n`,
    );
  else if (status.disks.length) {
    process.stdout.write('\n');
    printTable(
      status.disks.map((d) => ({ disk: d.diskId, blob: `osr-failover/${d.blob}`, bytes: d.sizeBytes })),
    );
  }
  if (status.libvirt) {
    const l = status.libvirt;
    process.stdout.write(
      `\nlibvirt domain ${l.domain} on host ${l.host}${l.drillNetwork ? ` (NICs on the isolated network ${l.drillNetwork})` : ''}${l.probe ? `; boot probe ${l.probe.ok ? 'answered' : 'FAILED'} by ${l.probe.how} in ${l.probe.seconds} s: ${l.probe.detail}` : ''}\n`,
    );
  } else if (status.materialized?.qmpSocket)
    process.stdout.write(
      `\nserved locally: QMP ${status.materialized.qmpSocket}, NBD ${status.materialized.nbdSocket}\n`,
    );
  if (status.azure)
    process.stdout.write(
      `\nin Azure (resource group ${status.azure.resourceGroup}): VM ${status.azure.vm?.name ?? '-'}, NIC ${status.azure.nic?.name ?? '-'}${status.azure.nic?.privateIp ? ` (${status.azure.nic.privateIp})` : ''}, disks ${status.azure.disks.map((d) => d.name).join(', ') || '-'}\n`,
    );
  if (status.bootCheck)
    process.stdout.write(
      `\nboot check: ${status.bootCheck.ok ? 'passed' : `FAILED (${status.bootCheck.reason})`} in ${status.bootCheck.durationMs} ms\n`,
    );
  process.stdout.write('\n');
  printTable(
    status.steps.map((s) => ({
      step: s.name,
      state: s.state,
      started: s.startedAt,
      seconds: s.endedAt ? ((Date.parse(s.endedAt) - Date.parse(s.startedAt)) / 1000).toFixed(1) : '',
      detail: s.detail,
    })),
  );
  if (status.error) process.stdout.write(`\nerror: ${status.error}\n`);
}

function show(json: boolean | undefined, value: { ref?: failover.JobRef; status?: RecoveryStatus }): void {
  if (json) return printJson(value);
  if (value.status) printRecovery(value.status);
  else if (value.ref) process.stdout.write(`started ${value.ref.workflowId}\n`);
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new CliError(`expected a number of seconds, got ${value}`, EXIT.usage);
  return n;
}

export function registerFailoverCommands(program: Command): void {
  const cmd = program
    .command('failover')
    .description('drills (test failover), failover, commit and change of recovery point of one machine');

  cmd
    .command('test <machine>')
    .description(
      'drill: build the machine from a point in osr-failover (test- prefix); replication goes on untouched. ' +
        'One live drill per machine: clean it up first, or pass --another',
    )
    .option(
      '--point <point>',
      'latest, latest-app, a point id, an ISO time, or group:<group>[/<id>] (newest point at or before it)',
      'latest',
    )
    .option(
      '--another',
      'start it even though a drill of the machine is alive (not cleaned up): its disks are copied once more',
    )
    .option('--no-wait', 'return once started')
    .option('--json', 'print JSON')
    .action(
      async (machine: string, o: { point: string; another?: boolean; wait: boolean; json?: boolean }) => {
        show(o.json, await withContext((ctx) => failover.startTestFailover(ctx, machine, o)));
      },
    );

  cmd
    .command('cleanup <target>')
    .description(
      "remove a drill's disks, local copies and record: a drill's job id, or a machine (all its drills)",
    )
    .option('--json', 'print JSON')
    .action(async (target: string, o: { json?: boolean }) => {
      const results = await withContext((ctx) => failover.cleanupTestFailover(ctx, target));
      if (o.json) return printJson(results);
      for (const r of results) show(false, r);
    });

  cmd
    .command('start <machine>')
    .description('fail the machine over; it then waits for `commit` or `change-point`')
    .option('--planned', "stop the source's writes and cut a final point first: no data loss")
    .option(
      '--point <point>',
      'unplanned: latest, latest-app, a point id, an ISO time, or group:<group>[/<id>]',
    )
    .option('--no-wait', 'return once started')
    .option('--json', 'print JSON')
    .action(
      async (machine: string, o: { planned?: boolean; point?: string; wait: boolean; json?: boolean }) => {
        show(o.json, await withContext((ctx) => failover.startFailover(ctx, machine, o)));
      },
    );

  cmd
    .command('commit <machine>')
    .description(
      'end forward replication of a failed-over machine; replica and points are kept for reprotect',
    )
    .option('--json', 'print JSON')
    .action(async (machine: string, o: { json?: boolean }) => {
      show(o.json, { status: await withContext((ctx) => failover.commitFailover(ctx, machine)) });
    });

  cmd
    .command('change-point <machine>')
    .description("rebuild a failed-over machine's disks from another recovery point")
    .requiredOption('--point <point>', 'latest, latest-app, a point id, an ISO time, or group:<group>[/<id>]')
    .option('--json', 'print JSON')
    .action(async (machine: string, o: { point: string; json?: boolean }) => {
      show(o.json, {
        status: await withContext((ctx) => failover.changeRecoveryPoint(ctx, machine, o.point)),
      });
    });

  cmd
    .command('status [job]')
    .description('a recovery job (workflow id, job id or machine) with its steps, or the list of jobs')
    .option('--json', 'print JSON')
    .action(async (job: string | undefined, o: { json?: boolean }) => {
      const result = await withContext((ctx) => failover.recoveryStatus(ctx, job));
      if (o.json) return printJson(result);
      if (Array.isArray(result))
        printTable(
          result.map((j) => ({ workflow: j.workflowId, kind: j.kind, state: j.state, status: j.status })),
        );
      else printRecovery(result);
    });

  cmd
    .command('configure <machine>')
    .description(
      "set the machine's recovery target (local, azure or libvirt), boot check and materialization",
    )
    .option(
      '--boot-command <command>',
      'starts the recovered machine (env: OSR_RECOVERED_DISKS, OSR_RECOVERED_NBD when materialized, OSR_MACHINE, OSR_POINT_ID)',
    )
    .option('--probe <command>', 'exits 0 once the machine is up; retried')
    .option('--boot-timeout <seconds>', 'timeout of the boot command', seconds)
    .option('--probe-timeout <seconds>', 'how long the probe is retried', seconds)
    .option('--no-boot-check', 'remove the boot check')
    .option('--materialize <format>', 'qcow2, raw, or off')
    .option(
      '--target <target>',
      'local (disks in osr-failover, default), azure (managed disks, NIC, VM) or libvirt (a domain on --recovery-host)',
    )
    .option('--recovery-host <host>', 'libvirt: the libvirt host (`osr host add`) the domain is defined on')
    .option(
      '--drill-network <network>',
      'libvirt: an existing network drills use instead of the isolated one OSR makes ("off" removes it)',
    )
    .option(
      '--network-map <source=network>',
      'libvirt: a NIC on primary-site network (or bridge) source goes on libvirt network (repeatable)',
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .option(
      '--console-pattern <regex>',
      'libvirt: without a guest agent, the guest is up once its serial console shows a matching line (default login:)',
    )
    .option(
      '--libvirt-boot-timeout <seconds>',
      'libvirt: how long the boot probe waits (default 300)',
      seconds,
    )
    .option('--resource-group <name>', 'azure: the resource group recovered machines go in')
    .option('--location <region>', 'azure: the region (default: azure.location of the configuration)')
    .option('--vm-size <size>', 'azure: the VM size, e.g. Standard_D2s_v5')
    .option('--os-disk-type <type>', 'azure: Standard_LRS, Premium_LRS or StandardSSD_LRS')
    .option('--subnet <id>', 'azure: resource id of the production subnet failovers land on')
    .option('--drill-subnet <id>', 'azure: resource id of the isolated subnet drills land on')
    .option('--drill-on-production-subnet', 'azure: let drills use the production subnet (not isolated)')
    .option(
      '--source-network <name>',
      "azure: the machine's primary-site network, as plans map it to subnets",
    )
    .option('--private-ip <ip>', 'azure: static private IP of the failed-over NIC ("off" removes it)')
    .option('--json', 'print JSON')
    .action(
      async (
        machine: string,
        o: AzureOptions & {
          bootCommand?: string;
          probe?: string;
          bootTimeout?: number;
          probeTimeout?: number;
          bootCheck: boolean;
          materialize?: string;
          target?: 'local' | 'azure' | 'libvirt';
          json?: boolean;
        } & LibvirtOptions,
      ) => {
        if ((o.bootCommand === undefined) !== (o.probe === undefined))
          throw new CliError('--boot-command and --probe go together', EXIT.usage);
        const bootCheck: RecoverySettings['bootCheck'] | null | undefined = !o.bootCheck
          ? null
          : o.bootCommand && o.probe
            ? {
                command: o.bootCommand,
                probe: o.probe,
                commandTimeoutSeconds: o.bootTimeout,
                probeTimeoutSeconds: o.probeTimeout,
              }
            : undefined;
        const materialize =
          o.materialize === undefined
            ? undefined
            : o.materialize === 'off'
              ? null
              : { format: o.materialize as 'qcow2' | 'raw' };
        const settings = await withContext((ctx) =>
          failover.configureRecovery(ctx, machine, {
            bootCheck,
            materialize,
            target: o.target,
            azure: azureChange(o),
            libvirt: libvirtChange(o),
          }),
        );
        if (o.json) return printJson(settings);
        const a = settings.azure;
        process.stdout.write(
          `${machine}: target ${settings.target ?? 'local'}, boot check ${settings.bootCheck ? 'on' : 'off'}, materialize ${settings.materialize?.format ?? 'off'}${
            settings.target === 'azure' && a
              ? `; ${a.vmSize} in ${a.resourceGroup}, ${a.osDiskType}, drills on ${a.drillSubnetId ?? (a.drillOnProductionSubnet ? 'the production subnet' : 'azure.drillSubnetId')}`
              : settings.target === 'libvirt' && settings.libvirt
                ? `; domain on ${settings.libvirt.recoveryHost}, drills on ${settings.libvirt.drillNetwork ?? 'an isolated network per drill'}`
                : ''
          }\n`,
        );
      },
    );
}

/** The azure target's options of `osr failover configure`. */
interface AzureOptions {
  resourceGroup?: string;
  location?: string;
  vmSize?: string;
  osDiskType?: AzureDiskType;
  subnet?: string;
  drillSubnet?: string;
  drillOnProductionSubnet?: boolean;
  privateIp?: string;
  sourceNetwork?: string;
}

/** The azure fields given on the command line (undefined: none). */
function azureChange(o: AzureOptions): RecoveryChange['azure'] {
  const change: NonNullable<RecoveryChange['azure']> = {
    resourceGroup: o.resourceGroup,
    location: o.location,
    vmSize: o.vmSize,
    osDiskType: o.osDiskType,
    subnetId: o.subnet,
    drillSubnetId: o.drillSubnet,
    drillOnProductionSubnet: o.drillOnProductionSubnet,
    privateIp: o.privateIp === 'off' ? null : o.privateIp,
    sourceNetwork: o.sourceNetwork,
  };
  return Object.values(change).some((v) => v !== undefined) ? change : undefined;
}

/** The libvirt target's options of `osr failover configure`. */
interface LibvirtOptions {
  recoveryHost?: string;
  drillNetwork?: string;
  networkMap: string[];
  consolePattern?: string;
  libvirtBootTimeout?: number;
}

/** The libvirt fields given on the command line (undefined: none). */
function libvirtChange(o: LibvirtOptions): RecoveryChange['libvirt'] {
  const networks: Record<string, string> = {};
  for (const m of o.networkMap) {
    const [source, network, extra] = m.split('=');
    if (!source || !network || extra !== undefined)
      throw new CliError(
        `--network-map takes <source>=<libvirt network>, not ${JSON.stringify(m)}`,
        EXIT.usage,
      );
    networks[source] = network;
  }
  const change: NonNullable<RecoveryChange['libvirt']> = {
    recoveryHost: o.recoveryHost,
    drillNetwork: o.drillNetwork === 'off' ? null : o.drillNetwork,
    networks: o.networkMap.length ? networks : undefined,
    consolePattern: o.consolePattern,
    bootTimeoutSeconds: o.libvirtBootTimeout,
  };
  return Object.values(change).some((v) => v !== undefined) ? change : undefined;
}
