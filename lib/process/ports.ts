// Port checks for the embedded stack: a clear error before start when a port is taken, and
// readiness polling after.
import fs from 'node:fs';
import net from 'node:net';

export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A port free now, for a server started a moment later (tests that run a stack beside another).
 * Drawn below the kernel's ephemeral range: a port the OS hands out for `listen(0)` or an outgoing
 * connection could be taken by another process (the Temporal dev server binds its internal
 * services to such ports) before ours binds it, and a client would then talk to a stranger.
 */
export async function freePort(): Promise<number> {
  const [low, high] = [10240, ephemeralRangeStart() - 1];
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (handedOut.has(port) || !(await isPortFree(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port found between ${low} and ${high}`);
}

/** Ports this process gave out already: two calls before either server binds never get one port twice. */
const handedOut = new Set<number>();

function ephemeralRangeStart(): number {
  try {
    const [start] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const n = Number(start);
    if (Number.isInteger(n) && n > 12000) return n;
  } catch {
    // Not Linux: the usual IANA range starts at 49152.
  }
  return 32768;
}

export function isPortOpen(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export async function waitForPort(
  port: number,
  what: string,
  options: { timeoutMs?: number; logFile?: string; exited?: Promise<unknown> } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let exitedWith: unknown;
  void options.exited?.then((code) => (exitedWith = code ?? 'exited'));
  while (Date.now() < deadline) {
    if (exitedWith !== undefined) {
      throw new Error(
        `${what} exited (${String(exitedWith)}) before listening on port ${port}; see ${options.logFile ?? 'its log'}`,
      );
    }
    if (await isPortOpen(port)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(
    `${what} did not listen on port ${port} within ${options.timeoutMs ?? 60_000} ms; see ${options.logFile ?? 'its log'}`,
  );
}
