// A QMP monitor in front of a VM's, for tests that must decide when the code under test's commands
// reach QEMU: every line passes through unchanged, except that while a hold is set, a command it
// names waits until the hold's promise resolves. Commands keep their order (the line protocol is
// one command at a time per client).
import fs from 'node:fs';
import net from 'node:net';

export interface QmpGate {
  /** The socket to hand to the code under test instead of the VM's. */
  path: string;
  /** Holds each `execute` named by `which` until `until()` resolves (undefined: stop holding). */
  hold(which: ((execute: string) => boolean) | undefined, until?: () => Promise<void>): void;
  /** How many commands were held. */
  readonly held: number;
  close(): Promise<void>;
}

export async function startQmpGate(target: string, path: string): Promise<QmpGate> {
  let which: ((execute: string) => boolean) | undefined;
  let until: () => Promise<void> = async () => undefined;
  let held = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    sockets.add(client).add(upstream);
    upstream.pipe(client);
    let buffered = '';
    let queue = Promise.resolve();
    client.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl + 1);
        buffered = buffered.slice(nl + 1);
        queue = queue.then(async () => {
          const execute = commandOf(line);
          if (execute && which?.(execute)) {
            held += 1;
            await until();
          }
          upstream.write(line);
        });
      }
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  fs.rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
  return {
    path,
    hold(w, u) {
      which = w;
      until = u ?? (async () => undefined);
    },
    get held() {
      return held;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function commandOf(line: string): string | undefined {
  try {
    const msg = JSON.parse(line) as { execute?: unknown };
    return typeof msg.execute === 'string' ? msg.execute : undefined;
  } catch {
    return undefined;
  }
}
