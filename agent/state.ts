// The agent's own file (/etc/osr-agent/agent.json, mode 0600): the process server it enrolled
// with, that server's pinned certificate, and the credential the server gave it.
import fs from 'node:fs';
import path from 'node:path';
import { writeDurably } from './tracking/durable';

export const DEFAULT_STATE_FILE = '/etc/osr-agent/agent.json';

export interface AgentState {
  /** host:port of the process server's agent listener. */
  server: string;
  /** SHA-256 of the listener's certificate (AA:BB:…): the only certificate the agent accepts. */
  fingerprint: string;
  agentId: string;
  /** The agent's credential: 256 random bits the server knows only as a hash. */
  secret: string;
  enrolledAt: string;
}

export function stateFile(): string {
  return process.env.OSR_AGENT_STATE ?? DEFAULT_STATE_FILE;
}

export function readState(file = stateFile()): AgentState {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new Error(
      `${file} does not exist: the agent is not enrolled. Enroll it with \`osr-agent enroll --server <host:9443> --token <token> --fingerprint <sha256>\` (\`osr agent token\` prints the command)`,
    );
  }
  const state = JSON.parse(text) as AgentState;
  for (const key of ['server', 'fingerprint', 'agentId', 'secret'] as const)
    if (typeof state[key] !== 'string' || !state[key]) throw new Error(`${file} has no ${key}: enroll again`);
  return state;
}

/** Durably (tracking/durable.ts): never half a credential, nor an empty one after a power loss. */
export function writeState(state: AgentState, file = stateFile()): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeDurably(file, `${JSON.stringify(state, null, 2)}\n`);
}
