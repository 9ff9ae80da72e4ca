// The two sites of `npm run bench -- --wan`: network namespaces made here, joined by one veth pair
// (the WAN link, shaped per profile by the run inside). The run itself (bench/wan/run.ts) is started
// inside the recovery site, so Temporal, Azurite and the applier it starts sit there on their own
// loopback; only the process server and the baselines' senders run in the primary site. When the run
// ends, fails or is interrupted, whatever still runs in the namespaces is stopped and they are removed.
import { spawn } from 'node:child_process';
import path from 'node:path';
import {
  addNamespace,
  addVethPair,
  deleteNamespace,
  deleteVethPair,
  inNamespace,
  type VethEnd,
} from '../../lib/net/netns';
import { isAlive } from '../../lib/process/managed-process';
import type { Cleanup } from '../harness';

/** Both ends of the WAN link; handed to the run inside through OSR_BENCH_WAN_SITES. */
export interface WanSites {
  primary: Required<VethEnd>;
  recovery: Required<VethEnd>;
}

const SITES_ENV = 'OSR_BENCH_WAN_SITES';

export function sitesFromEnv(): WanSites {
  const text = process.env[SITES_ENV];
  if (!text)
    throw new Error(`${SITES_ENV} is not set: start the WAN benchmark with \`npm run bench -- --wan\``);
  return JSON.parse(text) as WanSites;
}

/** Named after this process, so a leftover of another run never collides. */
function siteNames(): WanSites {
  const id = process.pid % 100000;
  const subnet = `10.214.${process.pid % 250}`;
  return {
    primary: { ns: `osr-wan-p-${id}`, dev: `owp${id}`, address: `${subnet}.1` },
    recovery: { ns: `osr-wan-r-${id}`, dev: `owr${id}`, address: `${subnet}.2` },
  };
}

export async function createSites(cleanup: Cleanup): Promise<WanSites> {
  const sites = siteNames();
  for (const site of [sites.primary, sites.recovery]) {
    cleanup.add(`remove namespace ${site.ns}`, () => deleteNamespace(site.ns));
    await addNamespace(site.ns);
  }
  cleanup.add('remove the WAN link', () => deleteVethPair(sites.primary));
  await addVethPair(sites.primary, sites.recovery);
  return sites;
}

/** Needs root (namespaces, tc); makes the sites, runs the benchmark inside the recovery site. */
export async function runWan(cleanup: Cleanup, say: (msg: string) => void): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('the WAN benchmark makes network namespaces and tc limits: run it as root');
  const sites = await createSites(cleanup);
  say(
    `sites: primary ${sites.primary.ns} (${sites.primary.address}), recovery ${sites.recovery.ns} ` +
      `(${sites.recovery.address}), one veth pair between them`,
  );
  const [command, ...args] = [
    ...inNamespace(sites.recovery.ns),
    process.execPath,
    path.join(__dirname, 'run.js'),
    ...process.argv.slice(2),
  ];
  const child = spawn(command as string, args, {
    stdio: 'inherit',
    env: { ...process.env, [SITES_ENV]: JSON.stringify(sites) },
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (err) => resolve(err.message));
  });
  // On Ctrl-C the run inside gets the signal too and cleans up its own processes: wait for it
  // (a minute at most) before the namespaces go.
  cleanup.add('wait for the run inside the recovery site', async () => {
    const pid = child.pid;
    if (pid === undefined || !isAlive(pid)) return;
    child.kill('SIGTERM');
    const gone = await Promise.race([exited, new Promise((r) => setTimeout(r, 60_000, 'timeout'))]);
    if (gone === 'timeout') child.kill('SIGKILL');
  });
  const code = await exited;
  if (code !== 0) throw new Error(`the WAN benchmark inside ${sites.recovery.ns} ended with ${code}`);
}
