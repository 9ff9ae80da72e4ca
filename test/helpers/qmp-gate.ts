// A QMP monitor in front of a VM's, for tests that must decide when the code under test's commands
// reach QEMU: every line passes through unchanged, except that while a hold is set, a command it
// names waits until the hold's promise resolves. Commands keep their order (the line protocol is
// one command at a time per client). A cut drops the connection at a chosen command instead and
// stops listening, as if the source went away there, until reopen().
import fs from 'node:fs';
import net from 'node:net';

export interface QmpGate {
  /** The socket to hand to the code under test instead of the VM's. */
  path: string;
  /** Holds each `execute` named by `which` until `until()` resolves (undefined: stop holding). */
  hold(which: ((execute: string) => boolean) | undefined, until?: () => Promise<void>): void;
  /** How many commands were held. */
  readonly held: number;
  /**
   * Drops the connection when an `execute` named by `which` arrives (it never reaches QEMU) and
   * stops listening; resolves then.
   */
  cut(which: (execute: string) => boolean): Promise<void>;
  /** Listens again after a cut. */
  reopen(): Promise<void>;
  close(): Promise<void>;
}

export async function startQmpGate(target: string, path: string): Promise<QmpGate> {
  let which: ((execute: string) => boolean) | undefined;
  let until: () => Promise<void> = async () => undefined;
  let held = 0;
  let cutAt: { which: (execute: string) => boolean; done: () => void } | undefined;
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
          if (execute && cutAt?.which(execute)) {
            const done = cutAt.done;
            cutAt = undefined;
            await stopListening();
            return done();
          }
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
  const listen = async () => {
    fs.rmSync(path, { force: true });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
  };
  const stopListening = async () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  await listen();
  return {
    path,
    hold(w, u) {
      which = w;
      until = u ?? (async () => undefined);
    },
    get held() {
      return held;
    },
    cut(w) {
      return new Promise<void>((done) => (cutAt = { which: w, done }));
    },
    reopen: listen,
    close: stopListening,
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
