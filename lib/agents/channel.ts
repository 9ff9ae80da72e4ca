// Requests to a connected agent's tracking over its connection (agent/protocol.ts), answered by a
// reply line or a data frame. The listener registers each authenticated connection here; the
// agent source connector (lib/sources/agent-source.ts) finds its agent here, in this process.
import {
  encode,
  type MachineFacts,
  type ServerMessage,
  type TrackingErrorName,
  type TrackingRequest,
} from '../../agent/protocol';

/** The agent answered with a failure; `kind` says which (QuiesceError, FrozenPointLostError …). */
export class AgentRequestError extends Error {
  constructor(
    readonly kind: TrackingErrorName,
    message: string,
  ) {
    super(message);
    this.name = 'AgentRequestError';
  }
}

/** The connection closed (or never answered) before the reply came. */
export class AgentGoneError extends Error {
  override readonly name = 'AgentGoneError';
}

interface Waiting {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class AgentChannel {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private closedWith?: Error;

  constructor(
    readonly agentId: string,
    /** What the agent said of its machine at this connection's hello (its disks). */
    readonly facts: MachineFacts,
    private readonly send: (line: string) => void,
  ) {}

  /** Sends a request; resolves with its reply's result, or a data frame's bytes. */
  request(request: TrackingRequest, timeoutMs = 120_000): Promise<unknown> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new AgentGoneError(
            `agent ${this.agentId} did not answer ${request.op} within ${timeoutMs / 1000} s`,
          ),
        );
      }, timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      this.send(encode({ type: 'request', id, request } satisfies ServerMessage));
    });
  }

  onReply(id: number, result: unknown, error?: { name: TrackingErrorName; message: string }): void {
    const w = this.take(id);
    if (!w) return;
    if (error) w.reject(new AgentRequestError(error.name, error.message));
    else w.resolve(result);
  }

  onData(id: number, data: Buffer): void {
    this.take(id)?.resolve(data);
  }

  close(reason: string): void {
    this.closedWith = new AgentGoneError(`agent ${this.agentId}: ${reason}`);
    for (const id of [...this.waiting.keys()]) this.take(id)?.reject(this.closedWith);
  }

  private take(id: number): Waiting | undefined {
    const w = this.waiting.get(id);
    if (!w) return undefined;
    clearTimeout(w.timer);
    this.waiting.delete(id);
    return w;
  }
}

const connected = new Map<string, AgentChannel>();

/** The channel of an agent connected to this process, if it is. */
export function agentChannel(agentId: string): AgentChannel | undefined {
  return connected.get(agentId);
}

export function registerChannel(channel: AgentChannel): void {
  connected.get(channel.agentId)?.close('a newer connection replaced this one');
  connected.set(channel.agentId, channel);
}

export function unregisterChannel(channel: AgentChannel, reason: string): void {
  channel.close(reason);
  if (connected.get(channel.agentId) === channel) connected.delete(channel.agentId);
}
