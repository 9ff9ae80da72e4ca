// A process server's agent listener: TLS on agents.port (9443), where Mobility agents dial out to.
// A connection's first message is an enrollment (a one-time token for an id and a credential) or
// a hello (id and credential); an enrolled agent then sends heartbeats, which keep its vault
// record's lastSeenAt fresh (written at most once a minute, agents.seenWriteSeconds) and carry the
// room of its point store (written at once when its alerts change, store-alerts.ts). Nothing an
// agent sends is trusted before its credential is checked against the vault; replies and data
// frames count only as answers to requests sent on the same connection (channel.ts), anything
// else closes it.
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { CODECS, type FrameCodec } from '../../agent/frame-codec';
import {
  encode,
  frameReader,
  HEARTBEAT_SECONDS,
  type AgentMessage,
  type ServerMessage,
} from '../../agent/protocol';
import { AgentChannel, registerChannel, unregisterChannel } from './channel';
import { checkStoreReport, DEFAULT_STORE_ALERT, storeKey, type StoreAlertSettings } from './store-alerts';
import type { Vault } from '../azure/vault';
import { makeSelfSigned } from '../config/self-signed';
import type { Logger } from '../config/logger';
import {
  AgentRefusal,
  authenticateAgent,
  enrollAgent,
  listenerDoc,
  markAgent,
  type ListenerRecord,
} from './registry';

export interface AgentListenerOptions {
  vault: Vault;
  host: string;
  port: number;
  /** host:port agents dial; default <hostname>:<port>. */
  address?: string;
  tls?: { certPath: string; keyPath: string };
  /** What to ask of agents that can compress their data frames (default brotli). */
  compression?: FrameCodec | 'none';
  /** How often a connected agent's lastSeenAt is written (default 60 s). */
  seenWriteSeconds?: number;
  /** When an agent's point store is low (default DEFAULT_STORE_ALERT). */
  storeFreeAlertBytes?: number;
  storeFreeAlertPoints?: number;
  stateDir: string;
  log: Logger;
}

export interface AgentListener {
  port: number;
  address: string;
  fingerprint: string;
  close(): Promise<void>;
}

/** The configured certificate, or the self-signed one made at the first start. */
async function certificate(o: AgentListenerOptions): Promise<{ cert: Buffer; key: Buffer }> {
  if (o.tls) return { cert: fs.readFileSync(o.tls.certPath), key: fs.readFileSync(o.tls.keyPath) };
  const dir = path.join(o.stateDir, 'agents', 'tls');
  if (!fs.existsSync(path.join(dir, 'cert.pem')))
    await makeSelfSigned(
      dir,
      'Open Site Recovery process server',
      `DNS:localhost,IP:127.0.0.1,DNS:${os.hostname()}`,
    );
  return {
    cert: fs.readFileSync(path.join(dir, 'cert.pem')),
    key: fs.readFileSync(path.join(dir, 'key.pem')),
  };
}

export async function startAgentListener(o: AgentListenerOptions): Promise<AgentListener> {
  const seenWriteMs = (o.seenWriteSeconds ?? 60) * 1000;
  const settings: StoreAlertSettings = {
    storeFreeAlertBytes: o.storeFreeAlertBytes ?? DEFAULT_STORE_ALERT.storeFreeAlertBytes,
    storeFreeAlertPoints: o.storeFreeAlertPoints ?? DEFAULT_STORE_ALERT.storeFreeAlertPoints,
  };
  const { cert, key } = await certificate(o);
  const fingerprint = new X509Certificate(cert).fingerprint256;
  const current = new Map<string, tls.TLSSocket>();
  const sockets = new Set<tls.TLSSocket>();
  let address = '';

  const handle = (socket: tls.TLSSocket): void => {
    sockets.add(socket);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const send = (m: ServerMessage): void => void socket.write(encode(m));
    let refused = false;
    const refuse = (err: unknown): void => {
      if (refused) return;
      refused = true;
      const r =
        err instanceof AgentRefusal
          ? err
          : new AgentRefusal('unavailable', `the process server failed: ${(err as Error).message}`);
      o.log.warn({ peer, code: r.code }, `agent refused: ${r.message}`);
      send({ type: 'refused', code: r.code, message: r.message });
      // Requests waiting on a refused connection fail now, not at their time-out.
      if (channel) unregisterChannel(channel, `refused: ${r.message}`);
      socket.end();
    };
    let agentId: string | undefined;
    let channel: AgentChannel | undefined;
    let lastWrite = 0;
    // What the store's alerts were at the last write: a change is written at once, not a minute on.
    let storeWritten: string | undefined;
    let silence: NodeJS.Timeout | undefined;
    const watch = (): void => {
      clearTimeout(silence);
      silence = setTimeout(() => socket.destroy(), (agentId ? 3 * HEARTBEAT_SECONDS : 15) * 1000);
    };
    watch();
    // One message at a time, in order: a hello's vault work finishes before its heartbeats count.
    let chain = Promise.resolve();
    const onMessage = async (m: AgentMessage): Promise<void> => {
      if (!agentId && m.type === 'enroll') {
        const enrolled = await enrollAgent(o.vault, m.token, m.facts, address, m.previous);
        o.log.info({ agentId: enrolled.agentId, hostname: m.facts.hostname, peer }, 'agent enrolled');
        send({ type: 'enrolled', ...enrolled });
        // A machine enrolled again: its old connection (old credential) is closed here.
        current.get(enrolled.agentId)?.destroy();
        socket.end();
      } else if (!agentId && m.type === 'hello') {
        await authenticateAgent(o.vault, m.agentId, m.secret);
        current.get(m.agentId)?.destroy();
        agentId = m.agentId;
        current.set(agentId, socket);
        const now = new Date().toISOString();
        const store = checkStoreReport(m.store);
        await markAgent(
          o.vault,
          agentId,
          { facts: m.facts, connected: true, listener: address, connectedAt: now, lastSeenAt: now },
          { report: store, settings },
        );
        storeWritten = store && storeKey(store, settings);
        lastWrite = Date.now();
        o.log.info({ agentId, hostname: m.facts.hostname, peer }, 'agent connected');
        send({ type: 'welcome', agentId, heartbeatSeconds: HEARTBEAT_SECONDS });
        // An agent that named no codec (an older one) is asked for raw frames, as before.
        const codec = CODECS.find((c) => c === (o.compression ?? 'brotli') && m.codecs?.includes(c));
        channel = new AgentChannel(agentId, m.facts, (line) => void socket.write(line), codec);
        registerChannel(channel);
        watch();
      } else if (agentId && m.type === 'heartbeat') {
        watch();
        send({ type: 'heartbeat-ack', seq: m.seq });
        const store = checkStoreReport(m.store);
        const key = store && storeKey(store, settings);
        if (Date.now() - lastWrite >= seenWriteMs || key !== storeWritten) {
          lastWrite = Date.now();
          storeWritten = key;
          // Refused (and so stopped) here when the agent was uninstalled while connected.
          await markAgent(
            o.vault,
            agentId,
            { lastSeenAt: new Date().toISOString(), connected: true },
            store && { report: store, settings },
          );
        }
      } else throw new AgentRefusal('bad-message', `unexpected message "${String(m.type)}" at this point`);
    };
    // Replies and data go straight to their waiting request (they never need the vault).
    const feed = frameReader(
      (v) => {
        const m = v as AgentMessage;
        if (channel && m.type === 'reply') {
          watch();
          channel.onReply(m.id, m.result, m.error);
        } else chain = chain.then(() => onMessage(m)).catch(refuse);
      },
      (id, data) => {
        if (!channel) throw new AgentRefusal('bad-message', 'a data frame before the agent said hello');
        watch();
        channel.onData(id, data);
      },
    );
    socket.on('data', (chunk: Buffer) => {
      if (refused) return;
      try {
        feed(chunk);
      } catch (err) {
        refuse(err instanceof AgentRefusal ? err : new AgentRefusal('bad-message', (err as Error).message));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(silence);
      sockets.delete(socket);
      if (channel) unregisterChannel(channel, 'its connection closed');
      if (!agentId || current.get(agentId) !== socket) return;
      current.delete(agentId);
      o.log.info({ agentId, peer }, 'agent disconnected');
      markAgent(o.vault, agentId, { connected: false, disconnectedAt: new Date().toISOString() }).catch(
        () => undefined,
      );
    });
  };

  const server = tls.createServer({ cert, key, minVersion: 'TLSv1.2' }, handle);
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  address = o.address ?? `${os.hostname()}:${port}`;
  const record: ListenerRecord = { name: address, address, fingerprint, startedAt: new Date().toISOString() };
  await o.vault.write(listenerDoc(address), record, '*');
  o.log.info({ address, fingerprint }, `agent listener on ${o.host}:${port}`);
  return {
    port,
    address,
    fingerprint,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const ids = [...current.keys()];
      current.clear();
      for (const s of sockets) s.destroy();
      const now = new Date().toISOString();
      await Promise.all(
        ids.map((id) =>
          markAgent(o.vault, id, { connected: false, disconnectedAt: now }).catch(() => undefined),
        ),
      );
      await closed;
    },
  };
}
