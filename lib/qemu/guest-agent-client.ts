// A client for the QEMU guest agent (qemu-ga) on the host side of its virtio-serial socket:
// enough to freeze and thaw the guest's filesystems around an app-consistent point.
import net from 'node:net';

export class GuestAgentError extends Error {
  override name = 'GuestAgentError';
}

export class GuestAgentClient {
  private buffered = '';
  private waiting: ((line: string) => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      // qemu-ga may send a 0xFF delimiter byte before a guest-sync-delimited answer: drop it.
      this.buffered += chunk.replace(/\u00ff/g, '');
      this.deliver();
    });
  }

  static async connect(socketPath: string, timeoutMs = 10_000): Promise<GuestAgentClient> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(socketPath);
      s.once('connect', () => resolve(s));
      s.once('error', (err) =>
        reject(
          new GuestAgentError(
            `no guest agent at ${socketPath} (${err.message}): is the VM running with a virtio-serial channel org.qemu.guest_agent.0 and qemu-ga inside?`,
          ),
        ),
      );
    });
    const client = new GuestAgentClient(socket, timeoutMs);
    // Resynchronize: a previous client may have left a half-read answer in the channel.
    const id = Math.floor(Math.random() * 2 ** 31);
    for (;;) {
      const answer = await client.execute<number>('guest-sync', { id });
      if (answer === id) return client;
    }
  }

  private deliver(): void {
    const nl = this.buffered.indexOf('\n');
    if (nl < 0 || !this.waiting) return;
    const line = this.buffered.slice(0, nl).trim();
    this.buffered = this.buffered.slice(nl + 1);
    if (!line) return this.deliver();
    const waiter = this.waiting;
    this.waiting = undefined;
    waiter(line);
  }

  private nextLine(command: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new GuestAgentError(`guest agent did not answer ${command} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiting = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
      this.deliver();
    });
  }

  async execute<T>(command: string, args?: Record<string, unknown>): Promise<T> {
    this.socket.write(
      `${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`,
    );
    const answer = JSON.parse(await this.nextLine(command)) as {
      return?: T;
      error?: { class: string; desc: string };
    };
    if (answer.error)
      throw new GuestAgentError(
        `guest agent refused ${command}: ${answer.error.class}: ${answer.error.desc}`,
      );
    return answer.return as T;
  }

  /** Freezes the guest's filesystems; returns how many were frozen. */
  freeze(): Promise<number> {
    return this.execute<number>('guest-fsfreeze-freeze');
  }

  thaw(): Promise<number> {
    return this.execute<number>('guest-fsfreeze-thaw');
  }

  close(): void {
    this.socket.destroy();
  }
}
