// The places the fault suite's faults act on: a network namespace of its own joined to this one by
// a veth pair (a worker runs inside, reaching Temporal and the storage through relays on the host
// end, so taking the link down cuts it off), a small tmpfs (a disk that fills), and storage
// connection strings for Azurite at another address.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { azuriteConnectionString } from '../../lib/azure/blob-client';

const run = promisify(execFile);

/** Azurite's connection string, at another address (a proxy, a relay). */
export function storageAt(host: string, port: number): string {
  return azuriteConnectionString(port).replace('//127.0.0.1:', `//${host}:`);
}

export async function mountTmpfs(mib: number): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-chaos-disk-'));
  await run('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir]);
  return dir;
}

export async function unmount(dir: string): Promise<void> {
  await run('umount', [dir]).catch(() => run('umount', ['-l', dir]));
  fs.rmSync(dir, { recursive: true, force: true });
}

export class Netns {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    readonly name: string,
    private readonly hostVeth: string,
    readonly hostAddress: string,
    readonly nsAddress: string,
  ) {}

  /** A namespace named after this process (several suites may run side by side), its end up. */
  static async create(): Promise<Netns> {
    const id = process.pid % 100000;
    const subnet = `10.213.${process.pid % 250}`;
    const ns = new Netns(`osr-chaos-${id}`, `ocx${id}h`, `${subnet}.1`, `${subnet}.2`);
    const inNs = (...args: string[]) => run('ip', ['netns', 'exec', ns.name, ...args]);
    await run('ip', ['netns', 'add', ns.name]);
    try {
      await run('ip', ['link', 'add', ns.hostVeth, 'type', 'veth', 'peer', 'name', `ocx${id}n`]);
      await run('ip', ['link', 'set', `ocx${id}n`, 'netns', ns.name]);
      await run('ip', ['addr', 'add', `${ns.hostAddress}/30`, 'dev', ns.hostVeth]);
      await run('ip', ['link', 'set', ns.hostVeth, 'up']);
      await inNs('ip', 'addr', 'add', `${ns.nsAddress}/30`, 'dev', `ocx${id}n`);
      await inNs('ip', 'link', 'set', `ocx${id}n`, 'up');
      await inNs('ip', 'link', 'set', 'lo', 'up');
    } catch (err) {
      await ns.remove();
      throw err;
    }
    return ns;
  }

  /** The command prefix that runs a program inside. */
  get exec(): string[] {
    return ['ip', 'netns', 'exec', this.name];
  }

  /** A TCP relay on the host end of the link to a loopback port here; returns its port. */
  async relay(targetPort: number): Promise<number> {
    const server = net.createServer((inbound) => {
      const outbound = net.connect(targetPort, '127.0.0.1');
      for (const s of [inbound, outbound]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      inbound.pipe(outbound).pipe(inbound);
      inbound.on('close', () => outbound.destroy());
      outbound.on('close', () => inbound.destroy());
    });
    await new Promise<void>((r) => server.listen(0, this.hostAddress, r));
    this.servers.push(server);
    return (server.address() as net.AddressInfo).port;
  }

  async link(up: boolean): Promise<void> {
    await run('ip', ['link', 'set', this.hostVeth, up ? 'up' : 'down']);
  }

  /** Whether a TCP connection from inside reaches the host end's relay for `port` (2 s at most). */
  async reachable(relayPort: number): Promise<boolean> {
    try {
      await run(
        'ip',
        [
          ...this.exec.slice(1),
          'timeout',
          '2',
          'bash',
          '-c',
          `exec 3<>/dev/tcp/${this.hostAddress}/${relayPort}`,
        ],
        { timeout: 5000 },
      );
      return true;
    } catch {
      return false;
    }
  }

  /** Removes the namespace and the link first: a relay still draining must not keep them. */
  async remove(): Promise<void> {
    await run('ip', ['link', 'del', this.hostVeth]).catch(() => undefined);
    await run('ip', ['netns', 'del', this.name]).catch(() => undefined);
    for (const s of this.sockets) s.destroy();
    for (const s of this.servers) s.close();
  }
}
