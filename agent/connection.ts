// The agent's connection out to its process server: TLS to host:port, accepted only when the
// server's certificate is the pinned one (by SHA-256; no CA is involved), then one JSON message
// per line (protocol.ts). `session` keeps an enrolled agent connected: hello, heartbeats, and a
// new connection with backoff whenever one drops, until the server refuses it for good.
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { CODECS } from './frame-codec';
import {
  encode,
  FINAL_REFUSALS,
  HEARTBEAT_SECONDS,
  lineReader,
  normalizeFingerprint,
  type AgentMessage,
  type MachineFacts,
  type StoreReport,
  type RefusalCode,
  type ServerMessage,
  type AgentRequest,
} from './protocol';

export interface ServerTarget {
  /** host:port */
  server: string;
  fingerprint: string;
}

/** The server said no, for a reason retrying cannot fix. */
export class RefusedError extends Error {
  override name = 'RefusedError';
  constructor(
    readonly code: RefusalCode,
    message: string,
  ) {
    super(message);
  }
}

export function splitAddress(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(address);
  const port = Number(m?.[2]);
  if (!m || !m[1] || port < 1 || port > 65535)
    throw new Error(`"${address}" is not host:port (e.g. ps1.example.net:9443)`);
  return { host: m[1], port };
}

/** A TLS connection whose peer certificate has the pinned fingerprint, or an error that shows both. */
export function connect(target: ServerTarget, timeoutMs = 20_000): Promise<tls.TLSSocket> {
  const { host, port } = splitAddress(target.server);
  const pinned = normalizeFingerprint(target.fingerprint);
  return new Promise((resolve, reject) => {
    // Node's CA check is off only so the pinned fingerprint can be compared; nothing is sent first.
    const socket = tls.connect({ host, port, servername: host, rejectUnauthorized: false });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no TLS connection to ${target.server} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot connect to ${target.server}: ${err.message}`));
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const raw = socket.getPeerCertificate().raw;
      const seen = raw ? new X509Certificate(raw).fingerprint256 : 'none';
      if (seen !== pinned) {
        socket.destroy();
        // Not final: a server in the middle may go away; the agent keeps trying, and says why.
        return reject(
          new Error(
            `the server at ${target.server} showed certificate ${seen}, not the pinned ${pinned}: not connecting (a different server, or its certificate was replaced: enroll again with the fingerprint \`osr agent token\` prints)`,
          ),
        );
      }
      resolve(socket);
    });
  });
}

/** Reads the server's messages from a socket; `next()` waits for the next one. */
export function messages(
  socket: tls.TLSSocket,
  onRequest?: (m: Extract<ServerMessage, { type: 'request' }>) => void,
): { next(timeoutMs: number): Promise<ServerMessage> } {
  const queue: ServerMessage[] = [];
  let waiter: ((m: ServerMessage | Error) => void) | undefined;
  let ended: Error | undefined;
  const push = (m: ServerMessage | Error): void => {
    if (m instanceof Error) ended ??= m;
    else queue.push(m);
    const w = waiter;
    waiter = undefined;
    w?.(m);
  };
  const feed = lineReader((v) => {
    const m = v as ServerMessage;
    if (m.type === 'request' && onRequest) onRequest(m);
    else push(m);
  });
  socket.on('data', (chunk: Buffer) => {
    try {
      feed(chunk);
    } catch (err) {
      socket.destroy();
      push(new Error(`bad data from the server: ${(err as Error).message}`));
    }
  });
  socket.on('close', () => push(new Error('the server closed the connection')));
  socket.on('error', (err) => push(new Error(`connection failed: ${err.message}`)));
  return {
    next: (timeoutMs) =>
      new Promise((resolve, reject) => {
        const queued = queue.shift();
        if (queued) return resolve(queued);
        if (ended) return reject(ended);
        const timer = setTimeout(() => {
          waiter = undefined;
          reject(new Error(`no answer from the server within ${timeoutMs / 1000} s`));
        }, timeoutMs);
        waiter = (m) => {
          clearTimeout(timer);
          if (m instanceof Error) reject(m);
          else resolve(queue.shift() as ServerMessage);
        };
      }),
  };
}

function refusal(m: ServerMessage): RefusedError | Error {
  if (m.type !== 'refused') return new Error(`unexpected answer from the server: ${m.type}`);
  return FINAL_REFUSALS.has(m.code) ? new RefusedError(m.code, m.message) : new Error(m.message);
}

/** One enrollment: the token for an id and a credential. */
export async function enroll(
  target: ServerTarget,
  token: string,
  facts: MachineFacts,
  previous?: { agentId: string; secret: string },
): Promise<{ agentId: string; secret: string }> {
  const socket = await connect(target);
  try {
    const inbox = messages(socket);
    socket.write(encode({ type: 'enroll', token, facts, previous } satisfies AgentMessage));
    const answer = await inbox.next(30_000);
    if (answer.type !== 'enrolled') throw refusal(answer);
    return { agentId: answer.agentId, secret: answer.secret };
  } finally {
    socket.destroy();
  }
}

export interface SessionOptions extends ServerTarget {
  agentId: string;
  secret: string;
  facts: () => MachineFacts;
  /** The room of the point store, sent at hello and with each heartbeat (absent: none sent). */
  store?: () => StoreReport | undefined;
  /** Resolves when the store's news should not wait: the next heartbeat goes at once. */
  storeChanged?: () => Promise<void>;
  log: (line: string) => void;
  /** Stops the session (resolves `session`). */
  signal?: AbortSignal;
  /** Serves the server's tracking requests; `write` sends on the connection they came on. */
  onRequest?: (id: number, request: AgentRequest, write: Write) => void;
  /** Called at each welcome (an upgraded agent confirms itself at its first). */
  onWelcome?: () => void;
}

/** Writes pieces in order, uninterrupted; resolves once the socket took the last (or closed). */
export type Write = (...pieces: Array<string | Buffer>) => Promise<void>;

/**
 * Bytes handed to TLS at a time: OpenSSL keeps a write's ciphertext until the socket takes it, and
 * a write of several pieces at once is first copied whole into one buffer.
 */
export const WRITE_SLICE_BYTES = 256 * 1024;

function* slices(piece: string | Buffer): Generator<string | Buffer> {
  if (typeof piece === 'string') yield piece;
  else
    for (let at = 0; at < piece.length; at += WRITE_SLICE_BYTES)
      yield piece.subarray(at, at + WRITE_SLICE_BYTES);
}

/**
 * Writes that wait for the socket, one after another: each call's pieces go uninterrupted, a slice
 * of at most WRITE_SLICE_BYTES at a time, the next once the socket took the last. The caller may
 * reuse its buffers once the promise resolves, and a caller that waits sends no faster than the
 * link takes (back-pressure): the agent holds no more than one slice of ciphertext.
 */
export function socketWriter(socket: tls.TLSSocket): Write {
  const one = (piece: string | Buffer): Promise<void> =>
    new Promise((resolve) => {
      if (socket.destroyed) return resolve();
      const done = (): void => {
        socket.off('close', done);
        resolve();
      };
      socket.once('close', done);
      socket.write(piece, done);
    });
  let queue: Promise<void> = Promise.resolve();
  return (...pieces) => {
    const mine = queue.then(async () => {
      for (const piece of pieces) for (const slice of slices(piece)) await one(slice);
    });
    queue = mine.catch(() => undefined); // one caller's failure is its own, the next still writes
    return mine;
  };
}

/** One connection's life: hello, then heartbeats until it drops. Resolves when it has dropped. */
async function connectedOnce(o: SessionOptions): Promise<void> {
  const socket = await connect(o);
  const stop = (): void => void socket.destroy();
  o.signal?.addEventListener('abort', stop);
  try {
    const write = socketWriter(socket);
    const inbox = messages(socket, (m) => o.onRequest?.(m.id, m.request, write));
    socket.write(
      encode({
        type: 'hello',
        agentId: o.agentId,
        secret: o.secret,
        facts: o.facts(),
        codecs: [...CODECS],
        store: o.store?.(),
      }),
    );
    const answer = await inbox.next(30_000);
    if (answer.type !== 'welcome') throw refusal(answer);
    o.log(`connected to ${o.server} as ${o.agentId}`);
    o.onWelcome?.();
    const every = (answer.heartbeatSeconds || HEARTBEAT_SECONDS) * 1000;
    for (let seq = 1; !o.signal?.aborted; seq++) {
      const beat = new Promise((r) => setTimeout(r, every));
      await Promise.race([beat, o.storeChanged?.() ?? beat]);
      void write(encode({ type: 'heartbeat', seq, store: o.store?.() }));
      // Three missed answers: the link is dead even if TCP has not noticed.
      const ack = await inbox.next(every * 3);
      if (ack.type !== 'heartbeat-ack') throw refusal(ack);
    }
  } finally {
    o.signal?.removeEventListener('abort', stop);
    socket.destroy();
  }
}

/** Stays connected, reconnecting with backoff (1 s doubling to 30 s); rejects only on a final refusal. */
export async function session(o: SessionOptions): Promise<void> {
  let backoff = 1000;
  while (!o.signal?.aborted) {
    const started = Date.now();
    try {
      await connectedOnce(o);
    } catch (err) {
      if (err instanceof RefusedError) throw err;
      if (o.signal?.aborted) break;
      o.log(`${(err as Error).message}; connecting again in ${backoff / 1000} s`);
    }
    if (Date.now() - started > 60_000) backoff = 1000;
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 30_000);
  }
}
