// The wire between the Mobility agent and a process server's agent listener: newline-delimited
// JSON over TLS, the agent always dialling out (no port is opened on the protected machine). The
// one definition of the messages, used by both ends (agent/ and lib/agents/). Pure: no I/O.
// Once connected, the server sends tracking requests; the agent answers each with a reply line,
// or, for disk data, with a data frame: a line {type:'data', id, length} then `length` raw bytes
// (no base64, no second connection to authenticate; frames stay small, so heartbeats interleave).
// An agent that names codecs in its hello may be asked for a read in one of them: its frame line
// then also says the codec, the raw length and each part's length (frame-codec.ts). A frame line
// without a codec is raw bytes, as older agents send.

import {
  checkLayout,
  compressFrame,
  decompressFrame,
  type CompressedLayout,
  type FrameCodec,
} from './frame-codec';
import type { TrackingErrorName } from './tracking/errors';
import type { StoreReport } from './tracking/store-terms';

export type { StoreReport } from './tracking/store-terms';
export {
  HOLD_LIMIT_MS,
  type HoldOutcome,
  type HoldResult,
  type ResumeResult,
  type StopResult,
} from './tracking/hold-terms';

/** The listener's port when agents.port is not set (ASR's process server uses 9443 too). */
export const DEFAULT_AGENT_PORT = 9443;
/** How often a connected agent says it is alive; the listener drops one silent for three. */
export const HEARTBEAT_SECONDS = 15;
/** A longer line is a broken or hostile peer: the connection is closed. */
export const MAX_LINE_BYTES = 256 * 1024;
/** The agent's exit code when the server refuses it for good (revoked, unknown): its service stops. */
export const EXIT_REFUSED = 78;
/** The most one read request (one data frame) carries. */
export const DATA_CHUNK_BYTES = 4 * 1024 * 1024;
/**
 * What a process server asks per read: the agent touches this much of each of its read buffers,
 * so its memory follows this size, not DATA_CHUNK_BYTES (1 MiB: 10 MiB less at peak than 4 MiB,
 * BENCHMARKS.md).
 */
export const READ_REQUEST_BYTES = 1024 * 1024;
/** The most of a disk one checksums request covers. */
export const CHECKSUM_SPAN_BYTES = 64 * 1024 * 1024;

/** A block device as the machine sees it (/sys/block). */
export interface AgentDisk {
  /** Kernel name: vda, sda, nvme0n1. */
  name: string;
  sizeBytes: number;
  readOnly: boolean;
  serial?: string;
  model?: string;
  /** Why the agent cannot track it live ("mounted at /data"), when something uses it. */
  inUse?: string;
}

/** What the agent reports about its machine at every connection. */
export interface MachineFacts {
  /** /etc/machine-id: stays the same across reinstalls of the agent. */
  machineId: string;
  hostname: string;
  /** PRETTY_NAME of /etc/os-release. */
  os: string;
  kernel: string;
  agentVersion: string;
  disks: AgentDisk[];
}

/** What the process server asks of an agent's tracking (agent/tracking/tracker.ts). */
export type TrackingRequest =
  | { op: 'enable'; disk: string }
  /** quiesce: freeze scripts, `scripts` (the machine's --pre/--post) and fsfreeze around the point. */
  | { op: 'freeze'; disks: string[]; pitId: string; quiesce: boolean; scripts?: FreezeScriptCommands }
  | { op: 'list' }
  | { op: 'release'; pitId: string; success: boolean }
  | { op: 'disable' }
  /** Answered with a data frame holding JSON [offset, length][] (the list can be long). */
  | { op: 'changes'; pitId: string; disk: string; mode: 'full' | 'delta' }
  /** Answered with a data frame of the snapshot's bytes (compressed in `codec` if asked). */
  | { op: 'read'; pitId: string; disk: string; offset: number; length: number; codec?: FrameCodec }
  /** Holds the writes of every tracked disk (a group cut) until `unhold`, at most HOLD_LIMIT_MS. */
  | { op: 'hold' }
  /** Lets held writes go (and cancels a hold not yet in place); answered with a HoldOutcome. */
  | { op: 'unhold' }
  /**
   * A planned failover: every tracked disk's writes stopped, with no time limit and across agent
   * restarts, until `resume-writes`; answered with a StopResult. Points frozen meanwhile are of
   * the stopped disks. An agent older than this answers "unknown request".
   */
  | { op: 'stop-writes' }
  /** Lets stopped writes go (a failed or cancelled planned failover); answered with a ResumeResult. */
  | { op: 'resume-writes' }
  /**
   * Answered with a data frame of the checksums of the snapshot's blocks in [offset, offset +
   * length), 16 bytes each (lib/segments/checksums.ts: SHA-256 truncated, the last block over its
   * real length): a resync reads only the blocks whose checksum differs from the replica's.
   */
  | { op: 'checksums'; pitId: string; disk: string; offset: number; length: number; blockBytes: number };

/**
 * Failback into the machine (agent/failback-target.ts): the process server's master target writes
 * the recovery-site copy onto the machine's own disks, through the agent. Only disks nothing uses
 * (not tracked, not mounted, not held) are opened, exclusively (O_EXCL), for as long as failback
 * writes them. `target-read` and `target-checksums` are answered with data frames, the others with
 * a reply line. An agent older than this answers "unknown request".
 */
export type TargetRequest =
  /** Answered with TargetOpened: each disk's size, once it is opened exclusively. */
  | { op: 'target-open'; disks: string[] }
  | { op: 'target-read'; disk: string; offset: number; length: number }
  | { op: 'target-checksums'; disk: string; offset: number; length: number; blockBytes: number }
  /** `data`: base64, at most TARGET_WRITE_BYTES decoded (a line stays under MAX_LINE_BYTES). */
  | { op: 'target-write'; disk: string; offset: number; data: string }
  | { op: 'target-zero'; disk: string; offset: number; length: number }
  | { op: 'target-flush'; disk: string }
  /** Closes every disk failback opened; answered with how many. */
  | { op: 'target-close' };

/** Bytes one `target-write` carries (base64 makes them a third larger on the line). */
export const TARGET_WRITE_BYTES = 128 * 1024;

export interface TargetOpened {
  disks: Array<{ disk: string; sizeBytes: number }>;
}

/** Commands given at protect (`osr protect --agent … --pre … --post …`), run on the machine. */
export interface FreezeScriptCommands {
  pre?: string;
  post?: string;
  timeoutSeconds?: number;
}

/**
 * An upgrade of the agent itself (agent/upgrade.ts): the bundle goes in `stage` chunks (base64,
 * at most UPGRADE_CHUNK_BYTES each, so a line stays under MAX_LINE_BYTES), `verify` checks its
 * SHA-256 and unpacks it beside the running agent, `switch` puts it in place and restarts into it.
 */
export type UpgradeRequest =
  | { op: 'stage'; offset: number; data: string }
  | { op: 'verify'; sha256: string; size: number }
  | { op: 'switch'; timeoutSeconds: number };

/** Everything the process server asks of an agent. */
export type AgentRequest = TrackingRequest | UpgradeRequest | TargetRequest;

/** Raw bytes per `stage` request (base64 makes them a third larger on the line). */
export const UPGRADE_CHUNK_BYTES = 128 * 1024;

export interface VerifyResult {
  /** The running agent's version and the staged bundle's, computed from its unpacked files. */
  from: string;
  to: string;
}

export interface EnableResult {
  sizeBytes: number;
  fullSyncRequired: boolean;
  warnings: string[];
  /** Why the change log since the last shipped point cannot be trusted (absent: it can, or none shipped). */
  trackingLost?: string;
}
export interface FreezeResult {
  instant: string;
  disks: Array<{ disk: string; sizeBytes: number }>;
}
export interface ReleaseResult {
  released: boolean;
  fullSyncRequired: string[];
}

/** Kinds of failure the process server tells apart (lib/sources/agent-source.ts). */
export type { TrackingErrorName };

export type AgentMessage =
  /**
   * `previous`: the credential this machine holds from an earlier enrollment, if any; the agent
   * keeps its id only by proving it (a machine id alone is claimable by anyone with a token).
   */
  | { type: 'enroll'; token: string; facts: MachineFacts; previous?: { agentId: string; secret: string } }
  /** `codecs`: the frame codecs this agent can send (absent: raw frames only, as older agents). */
  | {
      type: 'hello';
      agentId: string;
      secret: string;
      facts: MachineFacts;
      codecs?: FrameCodec[];
      store?: StoreReport;
    }
  | { type: 'heartbeat'; seq: number; store?: StoreReport }
  | { type: 'reply'; id: number; result?: unknown; error?: { name: TrackingErrorName; message: string } }
  | ({ type: 'data'; id: number; length: number } & Partial<CompressedLayout>);

export type RefusalCode =
  | 'token-unknown'
  | 'token-used'
  | 'token-expired'
  | 'agent-unknown'
  | 'agent-revoked'
  | 'bad-message'
  | 'unavailable';

export type ServerMessage =
  | { type: 'enrolled'; agentId: string; secret: string }
  | { type: 'welcome'; agentId: string; heartbeatSeconds: number }
  | { type: 'heartbeat-ack'; seq: number }
  | { type: 'refused'; code: RefusalCode; message: string }
  | { type: 'request'; id: number; request: AgentRequest };

/** Refusals that retrying cannot fix: the agent stops instead of reconnecting. */
export const FINAL_REFUSALS: ReadonlySet<RefusalCode> = new Set([
  'token-unknown',
  'token-used',
  'token-expired',
  'agent-unknown',
  'agent-revoked',
]);

export function encode(message: AgentMessage | ServerMessage): string {
  return `${JSON.stringify(message)}\n`;
}

/**
 * Splits a byte stream into lines and parses each as JSON; `onLine` gets the parsed value.
 * Returns the feeding function, which throws on a line over MAX_LINE_BYTES or one that is not JSON.
 */
export function lineReader(onLine: (value: unknown) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('utf8');
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim()) onLine(JSON.parse(line));
    }
    if (Buffer.byteLength(pending) > MAX_LINE_BYTES) throw new Error(`a line over ${MAX_LINE_BYTES} bytes`);
  };
}

/** A data frame: its header line and the bytes, as one buffer (written at once, never interleaved). */
export function encodeData(id: number, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(encode({ type: 'data', id, length: data.length })), data]);
}

/**
 * A data frame as pieces to write in order, with no copy of `data`: raw, or compressed in `codec`
 * in place (frame-codec.ts: `data` is overwritten). `data` must not change until they are written.
 */
export function dataPieces(id: number, data: Buffer, codec?: FrameCodec): Array<string | Buffer> {
  if (!codec) return [encode({ type: 'data', id, length: data.length }), data];
  const { layout, bytes } = compressFrame(data, codec);
  return [encode({ type: 'data', id, length: bytes, ...layout }), data.subarray(0, bytes)];
}

/**
 * lineReader plus data frames: a {type:'data'} line is followed by `length` raw bytes, given to
 * `onData` whole, inflated when it came compressed. Throws like lineReader, on a frame over
 * DATA_CHUNK_BYTES, and on a compressed frame whose layout or parts do not add up.
 */
export function frameReader(
  onLine: (value: unknown) => void,
  onData: (id: number, data: Buffer) => void,
): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  let frame: { id: number; parts: Buffer[]; left: number; layout?: CompressedLayout } | undefined;
  return (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      if (frame) {
        const take = Math.min(frame.left, pending.length);
        if (take) frame.parts.push(pending.subarray(0, take));
        pending = pending.subarray(take);
        frame.left -= take;
        if (frame.left > 0) return;
        const done = frame;
        frame = undefined;
        const bytes = Buffer.concat(done.parts);
        onData(done.id, done.layout ? decompressFrame(done.layout, bytes) : bytes);
        continue;
      }
      const nl = pending.indexOf(10);
      if (nl < 0) break;
      const line = pending.subarray(0, nl).toString('utf8');
      pending = pending.subarray(nl + 1);
      if (!line.trim()) continue;
      const value = JSON.parse(line) as { type?: unknown; id?: unknown; length?: unknown };
      if (value.type === 'data') {
        const length = Number(value.length);
        if (!Number.isInteger(length) || length < 0 || length > DATA_CHUNK_BYTES)
          throw new Error(`a data frame of ${String(value.length)} bytes (at most ${DATA_CHUNK_BYTES})`);
        const layout = 'codec' in value ? checkLayout(value, length, DATA_CHUNK_BYTES) : undefined;
        frame = { id: Number(value.id), parts: [], left: length, layout };
      } else onLine(value);
    }
    if (pending.length > MAX_LINE_BYTES) throw new Error(`a line over ${MAX_LINE_BYTES} bytes`);
  };
}

/** SHA-256 of a certificate as Node shows it (AA:BB:…), from any of the usual spellings. */
export function normalizeFingerprint(text: string): string {
  const hex = text
    .replace(/^sha256[:=]/i, '')
    .replace(/[^0-9a-f]/gi, '')
    .toUpperCase();
  if (hex.length !== 64)
    throw new Error(
      `"${text}" is not a SHA-256 certificate fingerprint (64 hex digits, e.g. AB:CD:…, as \`osr agent token\` prints it)`,
    );
  return hex.match(/../g)?.join(':') ?? hex;
}
