// Latency for the WAN benchmark (tc's netem is not available here): toxiproxy (built by
// `OSR_SETUP_BENCH=1 npm run setup`) in the primary site, listening on that site's loopback on the
// same port numbers as the servers in the recovery site, so a client there reaches them at
// 127.0.0.1 with a delay each way. The delay is added per chunk at the proxy: requests and responses
// wait, but TCP on the link itself sees no longer round trip (its window is not what is tested).
import fs from 'node:fs';
import path from 'node:path';
import { inNamespace } from '../../lib/net/netns';
import { spawnManaged, stopPid } from '../../lib/process/managed-process';
import { freePort, isPortOpen } from '../../lib/process/ports';
import { projectRoot, sleep, type Cleanup } from '../harness';
import type { WanSites } from './sites';

export const toxiproxyBinary = (): string =>
  process.env.OSR_TOXIPROXY_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'toxiproxy-server');

/** Why the latency profile cannot run, with the command that fixes it; undefined when it can. */
export function toxiproxyUnavailable(): string | undefined {
  const binary = toxiproxyBinary();
  if (fs.existsSync(binary)) return undefined;
  return `toxiproxy is not built (${binary} is missing); build it with \`OSR_SETUP_BENCH=1 npm run setup\` (or set OSR_TOXIPROXY_BINARY)`;
}

export interface Toxiproxy {
  /** A proxy at 127.0.0.1:`port` in the primary site to the recovery site's `port`, `oneWayMs` each way. */
  delay(port: number, oneWayMs: number): Promise<void>;
}

export async function startToxiproxy(cleanup: Cleanup, sites: WanSites, logDir: string): Promise<Toxiproxy> {
  const apiPort = await freePort();
  const [command, ...args] = [...inNamespace(sites.primary.ns), toxiproxyBinary()];
  const proc = spawnManaged({
    name: 'toxiproxy',
    command: command as string,
    args: [...args, '-host', sites.primary.address, '-port', String(apiPort)],
    logFile: path.join(logDir, 'toxiproxy.log'),
  });
  cleanup.add('stop toxiproxy', async () => void (await stopPid(proc.pid)));
  const api = `http://${sites.primary.address}:${apiPort}`;
  for (let waited = 0; !(await isPortOpen(apiPort, sites.primary.address)); waited += 200) {
    if (waited > 30_000) throw new Error(`toxiproxy did not listen on ${api}; see ${proc.logFile}`);
    await sleep(200);
  }
  const post = async (route: string, body: unknown): Promise<void> => {
    const res = await fetch(`${api}${route}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`toxiproxy ${route}: ${res.status} ${await res.text()}`);
  };
  return {
    async delay(port, oneWayMs) {
      const name = `port-${port}`;
      await post('/proxies', {
        name,
        listen: `127.0.0.1:${port}`,
        upstream: `${sites.recovery.address}:${port}`,
        enabled: true,
      });
      for (const stream of ['upstream', 'downstream'])
        await post(`/proxies/${name}/toxics`, {
          name: `latency-${stream}`,
          type: 'latency',
          stream,
          attributes: { latency: oneWayMs, jitter: 0 },
        });
    },
  };
}
