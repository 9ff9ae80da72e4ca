// The agent's own file (/etc/osr-agent/agent.json, mode 0600): the process server it enrolled
// with, that server's pinned certificate, and the credential the server gave it.
import fs from 'node:fs';
import path from 'node:path';

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

/**
 * Written to a private temporary file, flushed, then renamed over the old one: never half a
 * credential, and never an empty one after a power loss (ext4 writes file data back late).
 */
export function writeState(state: AgentState, file = stateFile()): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.new`;
  const fd = fs.openSync(temp, 'w', 0o600);
  try {
    fs.writeSync(fd, `${JSON.stringify(state, null, 2)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  // The new name too (the folder's entry), so that it is this file that a crash leaves.
  const dir = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}
