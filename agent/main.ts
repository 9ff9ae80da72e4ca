// osr-agent: the Mobility agent's command line, on the protected machine.
//   osr-agent enroll --server <host:9443> --token <token> --fingerprint <sha256> [--no-service]
//   osr-agent run          the service: stays connected to its process server
//   osr-agent uninstall    stops and removes the service and the agent's credential
//   osr-agent facts        prints what the agent reports (machine, OS, disks)
//   osr-agent upgrade-watch  (started by an upgrade, from the old code) rolls back an upgrade
//                          whose new version did not connect in time (upgrade.ts)
// Node built-ins only, so the compiled folder runs on any machine with Node (or the node binary
// copied beside it by `osr agent install`).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { enroll, RefusedError, session, splitAddress } from './connection';
import { ownVersion } from './bundle';
import { machineFacts } from './inventory';
import { AGENT_NODE_FLAGS, refreshLauncher } from './launcher';
import { EXIT_REFUSED, normalizeFingerprint } from './protocol';
import { installService, removeService } from './service';
import { readState, stateFile, writeState } from './state';
import { trackingHandler } from './tracking-requests';
import { FailbackTarget, isTargetRequest, targetHandler } from './failback-target';
import { storeSpace } from './tracking/store-space';
import { Tracker } from './tracking/tracker';
import { confirmUpgrade, isUpgrade, upgradeHandler, watchUpgrade } from './upgrade';

const USAGE = `usage: osr-agent enroll --server <host:port> --token <token> --fingerprint <sha256> [--no-service]
       osr-agent run | uninstall | facts | --version`;

class UsageError extends Error {}

/** The agent's CPU priority (nice 10): below the machine's applications, above batch jobs at 19. */
const AGENT_NICE = 10;

function options(args: string[]): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument "${a}"`);
    const next = args[i + 1];
    if (next !== undefined && !next.startsWith('--')) out.set(a.slice(2), (i++, next));
    else out.set(a.slice(2), true);
  }
  return out;
}

function required(o: Map<string, string | true>, name: string): string {
  const v = o.get(name);
  if (typeof v !== 'string') throw new UsageError(`--${name} <value> is required`);
  return v;
}

/** The launcher beside this folder (osr-agent), which the service runs. */
function launcher(): string {
  return path.join(path.dirname(__dirname), 'osr-agent');
}

/** The credential of an earlier enrollment of this machine, which keeps its agent id. */
function previous(): { agentId: string; secret: string } | undefined {
  try {
    const { agentId, secret } = readState();
    return { agentId, secret };
  } catch {
    return undefined;
  }
}

const log = (line: string): void => void process.stdout.write(`${new Date().toISOString()} ${line}\n`);

/** Whether the launcher was outdated and is now rewritten (launcher.ts): the agent then restarts under it. */
function keptLauncherCurrent(): boolean {
  try {
    if (!refreshLauncher(launcher())) return false;
  } catch (err) {
    log(`the launcher could not be brought up to date (${(err as Error).message}): running as it is`);
    return false;
  }
  log(`${launcher()} rewritten with this release's node flags (${AGENT_NODE_FLAGS}): restarting under it`);
  return true;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const o = options(rest);
  switch (command) {
    case 'enroll': {
      const server = required(o, 'server');
      let fingerprint: string;
      try {
        splitAddress(server);
        fingerprint = normalizeFingerprint(required(o, 'fingerprint'));
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const facts = machineFacts();
      const { agentId, secret } = await enroll(
        { server, fingerprint },
        required(o, 'token'),
        facts,
        previous(),
      );
      writeState({ server, fingerprint, agentId, secret, enrolledAt: new Date().toISOString() });
      const service = o.has('no-service') ? 'not installed (--no-service)' : installService(launcher());
      process.stdout.write(
        `enrolled as ${agentId} with ${server} (${facts.hostname}, ${facts.disks.length} disk(s)); service: ${service}\n`,
      );
      return 0;
    }
    case 'run': {
      const state = readState();
      const stop = new AbortController();
      for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => stop.abort());
      log(`osr-agent ${ownVersion()} as ${state.agentId}, server ${state.server}`);
      // Before any tracking starts: the service runs the agent again within seconds, under the new launcher.
      if (keptLauncherCurrent()) return 0;
      // The machine's own work first: the agent's reads, compression and TLS take the CPU it leaves.
      try {
        os.setPriority(AGENT_NICE);
      } catch (err) {
        log(`running at the default priority: ${(err as Error).message}`);
      }
      const tracker = new Tracker();
      for (const problem of await tracker.started()) log(`tracking not rebuilt at start: ${problem}`);
      const tracking = trackingHandler(tracker, { log });
      // An upgrade's switch stops this agent like SIGTERM does: cleanly, so its log stays trusted.
      const upgrades = upgradeHandler(() => stop.abort());
      const failbackTarget = new FailbackTarget({ tracks: (disk) => tracker.sizeOf(disk) > 0 });
      const target = targetHandler(failbackTarget);
      await session({
        ...state,
        facts: () => machineFacts(),
        store: () => storeSpace.report(),
        storeChanged: () => storeSpace.changed(),
        log,
        signal: stop.signal,
        onRequest: (id, request, write) =>
          isUpgrade(request)
            ? upgrades(id, request, write)
            : isTargetRequest(request)
              ? target(id, request, write)
              : tracking(id, request, write),
        onWelcome: () => {
          try {
            confirmUpgrade();
          } catch (err) {
            log(`upgrade not confirmed: ${(err as Error).message}`);
          }
        },
      });
      await failbackTarget.close();
      await tracker.stopCleanly().catch((err: Error) => log(`no clean-shutdown mark: ${err.message}`));
      return 0;
    }
    case 'uninstall': {
      const kind = removeService();
      fs.rmSync(stateFile(), { force: true });
      process.stdout.write(`removed the ${kind} service and ${stateFile()}\n`);
      return 0;
    }
    case 'facts':
      process.stdout.write(`${JSON.stringify(machineFacts(), null, 2)}\n`);
      return 0;
    case '--version':
      process.stdout.write(`${ownVersion()}\n`);
      return 0;
    case 'upgrade-watch':
      return watchUpgrade(log);
    default:
      throw new UsageError(command ? `unknown command "${command}"` : 'no command');
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const e = err as Error;
    process.stderr.write(`osr-agent: ${e.message}${e instanceof UsageError ? `\n${USAGE}` : ''}\n`);
    process.exit(e instanceof UsageError ? 2 : e instanceof RefusedError ? EXIT_REFUSED : 1);
  },
);
