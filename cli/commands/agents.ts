// `osr agent token|install|list|show|upgrade|resume|uninstall`: Mobility agents, the in-guest part that protects
// machines OSR cannot see from a hypervisor. Agents dial out to a process server's listener
// (agents.port, 9443); this reads and writes the vault, and `install` reaches the machine by SSH.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { installAgent } from '../../operations/agent-install';
import { upgradeAgents } from '../../operations/agent-upgrade';
import { resumeAgentWrites } from '../../operations/agent-resume';
import { forgetAgent, getAgent, listAgents, makeAgentToken, type AgentView } from '../../operations/agents';
import { parseDuration } from '../../shared/policy';
import { withContext } from '../common/context';
import { CliError, EXIT, printJson, printTable } from '../common/output';

const GiB = 1024 ** 3;
const size = (bytes: number) =>
  bytes >= GiB ? `${(bytes / GiB).toFixed(1)} GiB` : `${Math.round(bytes / 1024 ** 2)} MiB`;
const disks = (a: AgentView) => a.facts.disks.map((d) => `${d.name} ${size(d.sizeBytes)}`).join(', ');

function row(a: AgentView) {
  return {
    id: a.id,
    hostname: a.facts.hostname,
    state: a.state,
    version: a.version,
    outdated: a.outdated ? 'outdated' : '',
    last_seen: a.lastSeenAt ?? 'never',
    os: a.facts.os,
    disks: disks(a),
    store: a.store ? `${size(a.store.freeBytes)} free` : '',
    vm: a.vm ? `${a.vm.host}/${a.vm.vm}` : '',
    alerts: a.alerts.map((x) => x.kind).join(', '),
  };
}

function defaultKey(): string | undefined {
  for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
    const file = path.join(os.homedir(), '.ssh', name);
    if (fs.existsSync(file)) return file;
  }
  return undefined;
}

export function registerAgentCommands(program: Command): void {
  const agent = program
    .command('agent')
    .description(
      'Mobility agents: installed on a machine, they dial out to a process server (TLS, agents.port 9443)',
    );
  agent
    .command('token')
    .description('make a one-time enrollment token and print the command that enrolls a machine by hand')
    .option('--expires <duration>', 'valid this long (e.g. 15m, 1h; default 1h, at most 7d)')
    .option('--server <host:port>', 'the process server listener agents dial (default: the only one)')
    .option('--json', 'print JSON (the token included)')
    .action(async (o: { expires?: string; server?: string; json?: boolean }) => {
      const ttlSeconds = o.expires === undefined ? undefined : parseDuration(o.expires, '--expires');
      const made = await withContext((ctx) => makeAgentToken(ctx, { ttlSeconds, server: o.server }));
      if (o.json) return printJson(made);
      process.stdout.write(
        `one-time token, expires ${made.expiresAt} (OSR keeps only its hash). On the machine, with the agent copied to /opt/osr-agent:\n  /opt/osr-agent/${made.command}\n`,
      );
    });
  agent
    .command('install')
    .description(
      'copy the agent onto a machine over SSH (node gzipped and checked by SHA-256, or kept when the same is there), install its service (systemd, or an init script) and enroll it; waits until it is connected. A VMware VM (--vm) is reached at the guest IP its vCenter reports, and the agent keeps the link to the VM',
    )
    .option(
      '--ssh <user@host[:port]>',
      "the machine, as root (or a user that may write /opt and /etc); with --vm, the address to use instead of the guest IP (a NAT'd guest)",
    )
    .option(
      '--vm <vcenter-host/vm-name>',
      'a VMware VM of an added vCenter host (`osr discover --host <vcenter-host>`): must be powered on, with a guest IP from VMware Tools or --ssh',
    )
    .option('--key <file>', 'SSH private key (default ~/.ssh/id_ed25519, id_ecdsa or id_rsa)')
    .option(
      '--host-key-fingerprint <SHA256:…>',
      "the machine's SSH host key as ssh-keygen -l shows it; an unknown key is refused",
    )
    .option('--server <host:port>', 'the process server listener the agent dials (default: the only one)')
    .option('--wait <duration>', 'how long to wait for the agent to connect (default 3m)')
    .option('--json', 'print JSON')
    .action(
      async (o: {
        ssh?: string;
        vm?: string;
        key?: string;
        hostKeyFingerprint?: string;
        server?: string;
        wait?: string;
        json?: boolean;
      }) => {
        if (!o.ssh && !o.vm)
          throw new CliError(
            'say which machine: --ssh root@<address>, or --vm <vcenter-host>/<vm-name>',
            EXIT.usage,
          );
        const keyFile = o.key ?? defaultKey();
        if (!keyFile) throw new CliError('no SSH key: give one with --key <file>', EXIT.usage);
        let privateKey: Buffer;
        try {
          privateKey = fs.readFileSync(keyFile);
        } catch (err) {
          throw new CliError(`--key ${keyFile}: ${(err as Error).message}`, EXIT.usage);
        }
        const waitSeconds = o.wait === undefined ? undefined : parseDuration(o.wait, '--wait');
        const installed = await withContext((ctx) =>
          installAgent(ctx, {
            ssh: o.ssh,
            vm: o.vm,
            privateKey,
            hostKeyFingerprint: o.hostKeyFingerprint,
            server: o.server,
            waitSeconds,
            onProgress: (step) => o.json || process.stderr.write(`${step}\n`),
          }),
        );
        if (o.json) return printJson(installed);
        process.stdout.write(
          `agent ${installed.id} on ${installed.facts.hostname}${installed.vm ? ` (VM ${installed.vm.host}/${installed.vm.vm})` : ''} connected; disks: ${disks(installed)}\n`,
        );
      },
    );
  agent
    .command('list')
    .description(
      'enrolled agents: state, version (outdated: not the version this release ships), last sign of life, OS, disks, free room of the point store and its alerts (agent-store-low, agent-store-full)',
    )
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const agents = await withContext((ctx) => listAgents(ctx));
      if (o.json) return printJson(agents);
      printTable(agents.map(row));
    });
  agent
    .command('show <id>')
    .description(
      "one agent: its machine, connection, disks, the room of its point store (the filesystem holding /var/lib/osr-agent) and that store's alerts",
    )
    .option('--json', 'print JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const a = await withContext((ctx) => getAgent(ctx, id));
      if (o.json) return printJson(a);
      process.stdout.write(
        `${a.id}  ${a.facts.hostname}  ${a.state}\n  machine id ${a.facts.machineId}\n  ${a.facts.os}, kernel ${a.facts.kernel}\n` +
          `  agent ${a.version}${a.outdated ? ` (outdated: this release ships ${a.shippedVersion}; \`osr agent upgrade ${a.id}\`)` : ''}\n` +
          (a.vm
            ? `  VMware VM ${a.vm.host}/${a.vm.vm} (${a.vm.moref}${a.vm.instanceUuid ? `, instance ${a.vm.instanceUuid}` : ''}), installed at ${a.vm.address}\n`
            : '') +
          `  enrolled ${a.enrolledAt}; listener ${a.listener ?? '-'}; connected ${a.connectedAt ?? '-'}; last seen ${a.lastSeenAt ?? '-'}\n` +
          (a.store
            ? `  point store ${a.store.dir}: ${size(a.store.freeBytes)} free of ${size(a.store.sizeBytes)}` +
              `${a.store.largestPointBytes !== undefined ? `, largest recent point ${size(a.store.largestPointBytes)}` : ''} (at ${a.store.at})\n`
            : '  point store: not reported (an older agent)\n') +
          a.alerts.map((x) => `  ${x.severity} ${x.kind}: ${x.message}\n`).join(''),
      );
      printTable(
        a.facts.disks.map((d) => ({
          disk: d.name,
          size: size(d.sizeBytes),
          bytes: d.sizeBytes,
          serial: d.serial ?? '',
          read_only: d.readOnly,
        })),
      );
    });
  agent
    .command('upgrade [id]')
    .description(
      "send this release's agent to the machine over the agent's own connection (no SSH), verified by SHA-256 before it replaces the old one; the agent restarts into it keeping its id, credential and change log (and updates its launcher), and rolls back by itself if the new version does not connect in time",
    )
    .option('--all', 'every outdated agent (disconnected ones are skipped and listed)')
    .option(
      '--timeout <duration>',
      'how long the new version has to connect before it rolls back (default 2m)',
    )
    .option('--json', 'print JSON')
    .action(async (id: string | undefined, o: { all?: boolean; timeout?: string; json?: boolean }) => {
      const timeoutSeconds = o.timeout === undefined ? undefined : parseDuration(o.timeout, '--timeout');
      const results = await withContext((ctx) =>
        upgradeAgents(ctx, {
          id,
          all: o.all,
          timeoutSeconds,
          onProgress: (agentId, step) => o.json || process.stderr.write(`${agentId}: ${step}\n`),
        }),
      );
      if (o.json) return printJson(results);
      if (!results.length) return void process.stdout.write('no agent is outdated\n');
      for (const r of results)
        process.stdout.write(
          r.outcome === 'upgraded'
            ? `${r.agentId} upgraded: ${r.from} → ${r.version}\n`
            : r.outcome === 'current'
              ? `${r.agentId} already runs ${r.version}\n`
              : `${r.agentId} skipped (${r.outcome === 'skipped' ? r.reason : r.outcome}): still ${r.version}\n`,
        );
    });
  agent
    .command('resume <id>')
    .description(
      'give a machine back the writes a planned failover stopped (its agent suspended the protected disks): a failed or cancelled planned failover does it by itself; use this when it could not (the agent was away), or after a commit when the retired machine is to run again (its tracking is then removed). Safe to repeat',
    )
    .option('--json', 'print JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const r = await withContext((ctx) => resumeAgentWrites(ctx, id));
      if (o.json) return printJson(r);
      process.stdout.write(`${r.result}\n`);
    });
  agent
    .command('uninstall <id>')
    .description(
      'forget an agent: its credential is refused from then on and its service stops itself; on the machine, `/opt/osr-agent/osr-agent uninstall && rm -rf /opt/osr-agent` removes the files',
    )
    .option('--json', 'print JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const a = await withContext((ctx) => forgetAgent(ctx, id));
      if (o.json) return printJson({ uninstalled: a.id });
      process.stdout.write(`forgot agent ${a.id} (${a.facts.hostname}); it stops at its next contact\n`);
    });
}
