// The places the fault suite's faults act on: a network namespace of its own joined to this one by
// a veth pair (a worker runs inside, reaching Temporal and the storage through relays on the host
// end, so taking the link down cuts it off), a small tmpfs (a disk that fills), and storage
// (Azurite at another address: azuriteConnectionString's host).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  addNamespace,
  addVethPair,
  deleteNamespace,
  deleteVethPair,
  inNamespace,
  limitRate,
  setLinkUp,
} from '../../lib/net/netns';

const run = promisify(execFile);

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
    private readonly nsVeth: string,
    readonly hostAddress: string,
    readonly nsAddress: string,
  ) {}

  /** A namespace named after this process (several suites may run side by side), its end up. */
  static async create(): Promise<Netns> {
    const id = process.pid % 100000;
    const subnet = `10.213.${process.pid % 250}`;
    const ns = new Netns(`osr-chaos-${id}`, `ocx${id}h`, `ocx${id}n`, `${subnet}.1`, `${subnet}.2`);
    await addNamespace(ns.name);
    try {
      await addVethPair(
        { dev: ns.hostVeth, address: ns.hostAddress },
        { dev: ns.nsVeth, ns: ns.name, address: ns.nsAddress },
      );
    } catch (err) {
      await ns.remove();
      throw err;
    }
    return ns;
  }

  /** The command prefix that runs a program inside. */
  get exec(): string[] {
    return inNamespace(this.name);
  }

  /**
   * A TCP relay on the host end of the link to a loopback port here; returns its port.
   * `onInbound` is told of every chunk that came over the link from inside (bytes counted here).
   */
  async relay(targetPort: number, onInbound?: (bytes: number) => void): Promise<number> {
    const server = net.createServer((inbound) => {
      if (onInbound) inbound.on('data', (c: Buffer) => onInbound(c.length));
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

  /** Limits what goes out of the namespace over the link (tc tbf on its end). */
  async limitOutbound(bitsPerSecond: number): Promise<void> {
    await limitRate({ dev: this.nsVeth, ns: this.name }, bitsPerSecond);
  }

  async link(up: boolean): Promise<void> {
    await setLinkUp({ dev: this.hostVeth }, up);
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
    await deleteVethPair({ dev: this.hostVeth });
    await deleteNamespace(this.name);
    for (const s of this.sockets) s.destroy();
    for (const s of this.servers) s.close();
  }
}
