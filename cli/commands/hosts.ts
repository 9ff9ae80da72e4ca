// `osr host add|list|show|remove` and `osr discover`: the hosts that run the primary site's
// machines, and what each runs. Both ask a process server of the host (its own task queue).
import path from 'node:path';
import type { Command } from 'commander';
import type { DiscoveredMachine, HostConnection, HostRecord } from '../../shared/host-types';
import { addHost, removeHost } from '../../operations/host-admin';
import { parseDuration } from '../../shared/policy';
import { getHost, listHosts } from '../../operations/hosts';
import { discover } from '../../operations/discovery';
import { withContext } from '../common/context';
import { CliError, EXIT, printJson, printTable } from '../common/output';

interface AddOptions {
  vcenter?: string;
  user?: string;
  passwordFile?: string;
  thumbprint?: string;
  sockets?: string;
  libvirt?: string;
  timeout?: string;
  json?: boolean;
}

/** The one connection the flags describe, or a usage error naming what is missing. */
function connectionOf(o: AddOptions): HostConnection {
  const given = [o.vcenter && '--vcenter', o.sockets && '--sockets', o.libvirt && '--libvirt'].filter(
    Boolean,
  );
  if (given.length !== 1)
    throw new CliError(
      `give exactly one of --vcenter <https://…/sdk>, --sockets <dir>, --libvirt <uri>${given.length ? ` (got ${given.join(', ')})` : ''}`,
      EXIT.usage,
    );
  if (o.vcenter) {
    if (!o.user || !o.passwordFile)
      throw new CliError('a vCenter host needs --user <name> and --password-file <file>', EXIT.usage);
    return {
      kind: 'vcenter',
      url: o.vcenter,
      user: o.user,
      passwordFile: path.resolve(o.passwordFile),
      thumbprint: o.thumbprint,
    };
  }
  if (o.user || o.passwordFile || o.thumbprint)
    throw new CliError('--user, --password-file and --thumbprint go with --vcenter only', EXIT.usage);
  if (o.sockets) return { kind: 'sockets', dir: path.resolve(o.sockets) };
  return { kind: 'libvirt', uri: o.libvirt as string };
}

function where(h: HostRecord): string {
  return h.kind === 'vcenter' ? h.url : h.kind === 'sockets' ? h.dir : h.uri;
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
function size(bytes?: number): string {
  if (bytes === undefined) return '?';
  return bytes >= GiB ? `${+(bytes / GiB).toFixed(1)}G` : `${+(bytes / MiB).toFixed(1)}M`;
}

function machineRow(m: DiscoveredMachine) {
  return {
    host: m.host,
    name: m.name,
    state: m.state,
    disks: m.disks.map((d) => `${d.diskId} ${size(d.sizeBytes)} ${d.format ?? '?'}`).join(', ') || '-',
    tracking: m.changeTracking.possible ? 'yes' : 'no',
    protected_as: m.protectedAs ?? '-',
  };
}

export function registerHostCommands(program: Command): void {
  const host = program
    .command('host')
    .description("hosts that run the primary site's machines: libvirt, vCenter, a directory of QEMU sockets");
  host
    .command('add <name>')
    .description(
      'add a host after a process server of it (started with --host <name>) has read it; nothing is registered when it does not answer',
    )
    .option('--vcenter <url>', 'a vCenter: https://<vcenter>/sdk (the vSphere API)')
    .option('--user <name>', 'vCenter user discovery reads the inventory as')
    .option(
      '--password-file <file>',
      "file holding the vCenter user's password, on the host's process server",
    )
    .option('--thumbprint <sha256>', "pin the vCenter's self-signed certificate by its SHA-256 fingerprint")
    .option('--sockets <dir>', 'a directory of QEMU monitor sockets (<machine>.qmp) on the host')
    .option(
      '--libvirt <uri>',
      'a libvirt daemon: qemu:///system, or remote over SSH: qemu+ssh://root@host/system?keyfile=… (host key in ~/.ssh/known_hosts) or qemu+libssh://…&known_hosts=<file>; host keys are always checked',
    )
    .option(
      '--timeout <duration>',
      "how long the host's process server has to answer (default 30s; 5s to 10m)",
    )
    .option('--json', 'print JSON')
    .action(async (name: string, o: AddOptions) => {
      const connection = connectionOf(o);
      const timeoutSeconds = o.timeout === undefined ? undefined : parseDuration(o.timeout, '--timeout');
      const added = await withContext((ctx) => addHost(ctx, { name, connection, timeoutSeconds }));
      if (o.json) return printJson(added);
      process.stdout.write(
        `added host ${name} (${added.host.kind} ${where(added.host)}): ${added.machines} machine(s) found; list them with \`osr discover --host ${name}\`\n`,
      );
    });
  host
    .command('list')
    .description('list the added hosts')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const hosts = await withContext((ctx) => listHosts(ctx));
      if (o.json) return printJson(hosts);
      printTable(
        hosts.map((h) => ({ name: h.name, kind: h.kind, where: where(h), site: h.site, added: h.createdAt })),
      );
    });
  host
    .command('show <name>')
    .description('one host as recorded (never its password: only the file it is read from)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const h = await withContext((ctx) => getHost(ctx, name));
      if (o.json) return printJson(h);
      for (const [k, v] of Object.entries(h)) process.stdout.write(`${k.padEnd(14)} ${String(v)}\n`);
    });
  host
    .command('remove <name>')
    .description('remove a host (refused while a protected machine runs on it)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      await withContext((ctx) => removeHost(ctx, name));
      if (o.json) printJson({ removed: name });
      else process.stdout.write(`removed host ${name}\n`);
    });

  program
    .command('discover')
    .description(
      'list the machines of every added host (or one), as its process servers see them, with what is needed to protect them',
    )
    .option('--host <name>', 'only this host')
    .option('--json', 'print JSON')
    .action(async (o: { host?: string; json?: boolean }) => {
      const result = await withContext((ctx) => discover(ctx, o.host));
      if (o.json) return printJson(result);
      printTable(result.machines.map(machineRow));
      // Why tracking is not possible (or not persistent), once per reason.
      const reasons = new Map<string, string[]>();
      for (const m of result.machines)
        if (m.changeTracking.reason)
          reasons.set(m.changeTracking.reason, [
            ...(reasons.get(m.changeTracking.reason) ?? []),
            `${m.host}/${m.name}`,
          ]);
      for (const [reason, names] of reasons) process.stdout.write(`${names.join(', ')}: ${reason}\n`);
      for (const h of result.hosts.filter((x) => !x.ok))
        process.stderr.write(`osr: host ${h.host} not read: ${h.message ?? h.problem ?? ''}\n`);
      if (result.hosts.some((h) => !h.ok)) process.exitCode = EXIT.unavailable;
    });
}
