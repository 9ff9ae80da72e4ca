// Port checks for the embedded stack: a clear error before start when a port is taken, and
// readiness polling after.
import net from 'node:net';

export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the OS says is free now (for tests that run a stack beside another one). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1' }, () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
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
