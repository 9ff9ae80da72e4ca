// The wire between the Mobility agent and a process server's agent listener: newline-delimited
// JSON over TLS, the agent always dialling out (no port is opened on the protected machine). The
// one definition of the messages, used by both ends (agent/ and lib/agents/). Pure: no I/O.

/** The listener's port when agents.port is not set (ASR's process server uses 9443 too). */
export const DEFAULT_AGENT_PORT = 9443;
/** How often a connected agent says it is alive; the listener drops one silent for three. */
export const HEARTBEAT_SECONDS = 15;
/** A longer line is a broken or hostile peer: the connection is closed. */
export const MAX_LINE_BYTES = 256 * 1024;
/** The agent's exit code when the server refuses it for good (revoked, unknown): its service stops. */
export const EXIT_REFUSED = 78;

/** A block device as the machine sees it (/sys/block). */
export interface AgentDisk {
  /** Kernel name: vda, sda, nvme0n1. */
  name: string;
  sizeBytes: number;
  readOnly: boolean;
  serial?: string;
  model?: string;
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

export type AgentMessage =
  | { type: 'enroll'; token: string; facts: MachineFacts }
  | { type: 'hello'; agentId: string; secret: string; facts: MachineFacts }
  | { type: 'heartbeat'; seq: number };

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
  | { type: 'refused'; code: RefusalCode; message: string };

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
