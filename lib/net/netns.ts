// Network namespaces joined by veth pairs, and a link's rate limited by tc's token bucket (tbf):
// the fault suite cuts such links, the WAN benchmark shapes them. Needs root. netem and fq are not
// available on every kernel (see docs/operations.md), so latency comes from elsewhere.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One end of a veth pair: its interface name, its namespace (omitted: this process's) and its /30 address. */
export interface VethEnd {
  dev: string;
  ns?: string;
  address: string;
}

/** The command prefix that runs a program inside namespace `ns` (`ip netns exec` execs it: same pid). */
export function inNamespace(ns: string): string[] {
  return ['ip', 'netns', 'exec', ns];
}

const ip = (ns: string | undefined, ...args: string[]) => run('ip', ns ? ['-n', ns, ...args] : args);

export async function addNamespace(name: string): Promise<void> {
  await run('ip', ['netns', 'add', name]);
  await ip(name, 'link', 'set', 'lo', 'up');
}

/** Kills what still runs inside (processes we started there), then removes the namespace. */
export async function deleteNamespace(name: string): Promise<void> {
  const pids = await run('ip', ['netns', 'pids', name]).then(
    (r) => r.stdout.split(/\s+/).filter(Boolean),
    () => [],
  );
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await run('ip', ['netns', 'del', name]).catch(() => undefined);
}

/** A veth pair between two namespaces (or one and this process's), both ends addressed and up. */
export async function addVethPair(a: VethEnd, b: VethEnd): Promise<void> {
  await run('ip', ['link', 'add', a.dev, 'type', 'veth', 'peer', 'name', b.dev]);
  for (const end of [a, b]) {
    if (end.ns) await run('ip', ['link', 'set', end.dev, 'netns', end.ns]);
    await ip(end.ns, 'addr', 'add', `${end.address}/30`, 'dev', end.dev);
    await ip(end.ns, 'link', 'set', end.dev, 'up');
  }
}

/** Deleting one end removes the pair; quiet when it is already gone (its namespace was removed). */
export async function deleteVethPair(end: Pick<VethEnd, 'dev' | 'ns'>): Promise<void> {
  await ip(end.ns, 'link', 'del', end.dev).catch(() => undefined);
}

export async function setLinkUp(end: Pick<VethEnd, 'dev' | 'ns'>, up: boolean): Promise<void> {
  await ip(end.ns, 'link', 'set', end.dev, up ? 'up' : 'down');
}

/**
 * Limits what leaves `end` to `bitsPerSecond` (tbf). The bucket holds 2 ms at the rate (at least
 * 32 KiB, so a 64 KiB GSO packet is split, not dropped) and the queue 50 ms; replaces any limit.
 */
export async function limitRate(end: Pick<VethEnd, 'dev' | 'ns'>, bitsPerSecond: number): Promise<void> {
  const burst = Math.max(32 * 1024, Math.round(bitsPerSecond / 8 / 500));
  const args = ['qdisc', 'replace', 'dev', end.dev, 'root', 'tbf', 'rate', `${bitsPerSecond}bit`];
  args.push('burst', `${burst}b`, 'latency', '50ms');
  await run('tc', end.ns ? ['-n', end.ns, ...args] : args);
}

export async function removeRateLimit(end: Pick<VethEnd, 'dev' | 'ns'>): Promise<void> {
  const args = ['qdisc', 'del', 'dev', end.dev, 'root'];
  await run('tc', end.ns ? ['-n', end.ns, ...args] : args).catch(() => undefined);
}
