// The WAN link as the benchmark sees it: its profiles, the bytes that crossed it (counted by the
// kernel on the primary site's end, whatever sent them) and its own rate, measured by a raw TCP
// transfer from the primary site into the recovery site (where this run sits).
import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { inNamespace, limitRate, type VethEnd } from '../../lib/net/netns';
import { runCommand, type Cleanup } from '../harness';
import type { WanSites } from './sites';

const run = promisify(execFile);

export interface LinkProfile {
  name: string;
  bitsPerSecond: number;
  /** Round trip added by toxiproxy (half each way) on top of the rate limit. */
  rttMs?: number;
}

export const PROFILES: readonly LinkProfile[] = [
  { name: '100 Mbit/s', bitsPerSecond: 100e6 },
  { name: '1 Gbit/s', bitsPerSecond: 1e9 },
];

/** Run last, when toxiproxy is built: the 100 Mbit/s link with a continental round trip. */
export const LATENCY_PROFILE: LinkProfile = {
  name: '100 Mbit/s + 40 ms RTT',
  bitsPerSecond: 100e6,
  rttMs: 40,
};

/** Both directions limited alike (tbf on each end's egress). */
export async function shapeLink(sites: WanSites, profile: LinkProfile): Promise<void> {
  await limitRate(sites.primary, profile.bitsPerSecond);
  await limitRate(sites.recovery, profile.bitsPerSecond);
}

/** Bytes sent so far from `end` into the link (IP packets, all traffic). */
export async function sentBytes(end: Required<VethEnd>): Promise<number> {
  const { stdout } = await run('ip', ['-n', end.ns, '-s', '-j', 'link', 'show', 'dev', end.dev]);
  const [link] = JSON.parse(stdout) as Array<{ stats64: { tx: { bytes: number } } }>;
  if (!link) throw new Error(`no link ${end.dev} in ${end.ns}`);
  return link.stats64.tx.bytes;
}

/** Runs `fn` and counts what crossed the link from the primary site meanwhile. */
export async function countWire<T>(
  sites: WanSites,
  fn: () => Promise<T>,
): Promise<{ result: T; wire: number }> {
  const before = await sentBytes(sites.primary);
  const result = await fn();
  return { result, wire: (await sentBytes(sites.primary)) - before };
}

export interface LinkRate {
  /** TCP payload received per second. */
  payloadBytesPerSecond: number;
  /** Bytes on the link per second (payload plus TCP/IP headers): what OSR's wire bytes are divided by. */
  wireBytesPerSecond: number;
  seconds: number;
}

/**
 * A raw TCP stream from the primary site for `seconds`, timed at the receiving end. `route` gives
 * the host the sender connects to for the receiver's port (default: straight across the link).
 */
export async function rawTcpRate(
  cleanup: Cleanup,
  sites: WanSites,
  seconds: number,
  route: (port: number) => Promise<string> = () => Promise.resolve(sites.recovery.address),
): Promise<LinkRate> {
  let received = 0;
  let first = 0;
  let last = 0;
  const server = net.createServer();
  const done = new Promise<void>((resolve) => {
    server.once('connection', (socket) => {
      socket.on('data', (chunk: Buffer) => {
        if (!first) first = performance.now();
        received += chunk.length;
        last = performance.now();
      });
      socket.once('end', () => resolve());
      socket.once('error', () => resolve());
    });
  });
  await new Promise<void>((r) => server.listen(0, sites.recovery.address, r));
  try {
    const port = (server.address() as net.AddressInfo).port;
    const tool = path.join(__dirname, 'site-tool.js');
    const host = await route(port);
    const { wire } = await countWire(sites, async () => {
      const [command, ...args] = [...inNamespace(sites.primary.ns), process.execPath, tool];
      await runCommand(cleanup, command as string, [...args, 'send', host, String(port), String(seconds)]);
      await done;
    });
    const elapsed = (last - first) / 1000;
    return {
      payloadBytesPerSecond: received / elapsed,
      wireBytesPerSecond: wire / elapsed,
      seconds: elapsed,
    };
  } finally {
    server.close();
  }
}

/**
 * Runs `fn` while reading the link's counter every 250 ms; returns the rate between the moments
 * 10 % and 90 % of its bytes had crossed (the steady middle, without start and apply).
 */
export async function steadyRate<T>(
  sites: WanSites,
  fn: () => Promise<T>,
): Promise<{ result: T; wire: number; bitsPerSecond: number }> {
  const base = await sentBytes(sites.primary);
  const samples: Array<{ at: number; bytes: number }> = [];
  let running = true;
  const sampler = (async () => {
    while (running) {
      samples.push({ at: performance.now(), bytes: (await sentBytes(sites.primary)) - base });
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  const result = await fn().finally(() => (running = false));
  await sampler;
  const wire = (await sentBytes(sites.primary)) - base;
  const at = (share: number) => samples.find((s) => s.bytes >= share * wire) ?? samples[samples.length - 1];
  const [a, b] = [at(0.1), at(0.9)];
  const bitsPerSecond = a && b && b.at > a.at ? ((b.bytes - a.bytes) * 8) / ((b.at - a.at) / 1000) : 0;
  return { result, wire, bitsPerSecond };
}
