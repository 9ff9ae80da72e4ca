// Requests to a connected agent's tracking over its connection (agent/protocol.ts), answered by a
// reply line or a data frame. The listener registers each authenticated connection here; the
// agent source connector (lib/sources/agent-source.ts) finds its agent here, in this process.
// An answer binds to its request by id, on this connection only: an agent can answer nothing but
// what was asked of it, so no other machine's disks (see onAnswer).
import type { FrameCodec } from '../../agent/frame-codec';
import {
  encode,
  type MachineFacts,
  type ServerMessage,
  type TrackingErrorName,
  type AgentRequest,
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

/** The agent answered something it was not asked: the listener drops its connection. */
export class AgentProtocolError extends Error {
  override readonly name = 'AgentProtocolError';
}

/** Requests answered with a data frame; the others with a reply line. */
const DATA_OPS: ReadonlySet<AgentRequest['op']> = new Set([
  'changes',
  'read',
  'checksums',
  'target-read',
  'target-checksums',
]);

/** The connection closed (or never answered) before the reply came. */
export class AgentGoneError extends Error {
  override readonly name = 'AgentGoneError';
}

interface Waiting {
  data: boolean;
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
    /** The codec both ends have for data frames (reads ask for it); none: raw frames. */
    readonly codec?: FrameCodec,
  ) {}

  /** Sends a request; resolves with its reply's result, or a data frame's bytes. */
  request(request: AgentRequest, timeoutMs = 120_000): Promise<unknown> {
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
      this.waiting.set(id, { data: DATA_OPS.has(request.op), resolve, reject, timer });
      this.send(encode({ type: 'request', id, request } satisfies ServerMessage));
    });
  }

  /** A reply line; throws AgentProtocolError when no request of this connection expects it. */
  onReply(id: number, result: unknown, error?: { name: TrackingErrorName; message: string }): void {
    // A failed data request is answered by a reply line with its error (a read of a lost point).
    const w = this.onAnswer(id, false, !!error);
    if (!w) return;
    if (error) w.reject(new AgentRequestError(error.name, error.message));
    else w.resolve(result);
  }

  /** A data frame; throws AgentProtocolError when no request of this connection expects it. */
  onData(id: number, data: Buffer): void {
    this.onAnswer(id, true)?.resolve(data);
  }

  /**
   * The request an answer is for. An id never issued here, or an answer of the wrong kind (bytes
   * for a reply, a reply with a result for bytes), is a broken or hostile agent: refused, and the
   * request fails. An id issued but no longer waiting (it timed out) is a late answer: dropped.
   */
  private onAnswer(id: number, data: boolean, failed = false): Waiting | undefined {
    if (!Number.isInteger(id) || id < 1 || id >= this.nextId)
      throw new AgentProtocolError(
        `agent ${this.agentId} answered request ${id}, which was never sent to it`,
      );
    const w = this.take(id);
    if (w && w.data !== data && !(failed && w.data)) {
      const err = new AgentProtocolError(
        `agent ${this.agentId} answered request ${id} with ${data ? 'a data frame' : 'a reply line'}, not what was asked`,
      );
      w.reject(err);
      throw err;
    }
    return w;
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

/** The channel of an agent connected to this process; otherwise `fail` made with what to look at. */
export function connectedChannel(agentId: string, fail: (message: string) => Error): AgentChannel {
  const channel = connected.get(agentId);
  if (!channel)
    throw fail(
      `agent ${agentId} is not connected to this process server (see \`osr agent show ${agentId}\`: disconnected, or connected to another process server)`,
    );
  return channel;
}

export function registerChannel(channel: AgentChannel): void {
  connected.get(channel.agentId)?.close('a newer connection replaced this one');
  connected.set(channel.agentId, channel);
}

export function unregisterChannel(channel: AgentChannel, reason: string): void {
  channel.close(reason);
  if (connected.get(channel.agentId) === channel) connected.delete(channel.agentId);
}
