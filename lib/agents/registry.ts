// Mobility agents in the vault: one-time enrollment tokens (agent-tokens/<sha256>.json: the
// token itself is never stored), enrolled agents (agents/<id>.json with the hash of each agent's
// credential) and the process servers' listeners (agent-listeners/<name>.json: the address agents
// dial and the certificate they pin). Used by the listener (enroll, hello) and the control plane.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { MachineFacts, RefusalCode, StoreReport } from '../../agent/protocol';
import { VaultConflictError, type Vault } from '../azure/vault';
import {
  recordStore,
  storeAlerts,
  type AgentStoreAlert,
  type RecordedStore,
  type StoreAlertSettings,
} from './store-alerts';

export interface AgentTokenRecord {
  createdAt: string;
  createdBy: string;
  expiresAt: string;
  usedAt?: string;
  usedBy?: string;
}

export interface AgentRecord {
  id: string;
  facts: MachineFacts;
  enrolledAt: string;
  /** sha256 of the agent's credential (256 random bits, so a plain hash is enough). */
  secretHash: string;
  connected: boolean;
  /** The listener it is connected to (or was last). */
  listener?: string;
  connectedAt?: string;
  lastSeenAt?: string;
  disconnectedAt?: string;
  /** The vCenter VM this agent protects, when it was installed with `--vm`. */
  vm?: AgentVmLink;
  /** The room of its point store, as last reported (store-alerts.ts); absent: an older agent. */
  store?: RecordedStore;
}

/** An agent's VMware VM: the vCenter host in OSR, the VM's name there and its identities. */
export interface AgentVmLink {
  host: string;
  vm: string;
  /** The managed object id (e.g. vm-42): stable within one vCenter. */
  moref: string;
  instanceUuid?: string;
  /** The address the agent was pushed to (the guest IP vCenter reported, or --ssh). */
  address: string;
}

export interface ListenerRecord {
  name: string;
  /** host:port agents dial. */
  address: string;
  fingerprint: string;
  startedAt: string;
}

export const tokenHash = (token: string) => createHash('sha256').update(token).digest('hex');
export const agentTokenDoc = (token: string) => `agent-tokens/${tokenHash(token)}.json`;
export const agentDoc = (id: string) => {
  if (!/^ag-[0-9a-f]{12}$/.test(id))
    throw new Error(`agent id "${id}" is not valid: use ag- and 12 hex digits, as \`osr agent list\` shows`);
  return `agents/${id}.json`;
};
export const AGENTS_PREFIX = 'agents/';
export const listenerDoc = (name: string) => `agent-listeners/${name.replace(/[^A-Za-z0-9._-]/g, '_')}.json`;
export const LISTENERS_PREFIX = 'agent-listeners/';

export class AgentRefusal extends Error {
  constructor(
    readonly code: RefusalCode,
    message: string,
  ) {
    super(message);
  }
}

/** A new one-time token, valid for `ttlSeconds`. */
export async function createAgentToken(
  vault: Vault,
  ttlSeconds: number,
  createdBy: string,
): Promise<{ token: string; expiresAt: string }> {
  const token = `osrat_${randomBytes(32).toString('base64url')}`;
  const now = Date.now();
  const expiresAt = new Date(now + ttlSeconds * 1000).toISOString();
  await vault.write<AgentTokenRecord>(agentTokenDoc(token), {
    createdAt: new Date(now).toISOString(),
    createdBy,
    expiresAt,
  });
  return { token, expiresAt };
}

const hashSecret = (secret: string) => createHash('sha256').update(secret).digest('hex');

/**
 * Spends a token (once: the write is conditional on the version read) and records the agent. An
 * agent that proves its earlier credential (`previous`) keeps its id with a new credential; any
 * other enrollment gets a new id, even for a machine id already known (claiming it is not proof:
 * a clone or a hostile token holder would otherwise take over that agent and its disks' reads).
 */
export async function enrollAgent(
  vault: Vault,
  token: string,
  facts: MachineFacts,
  listener: string,
  previous?: { agentId: string; secret: string },
): Promise<{ agentId: string; secret: string }> {
  const doc = agentTokenDoc(token);
  const found = await vault.read<AgentTokenRecord>(doc);
  if (!found)
    throw new AgentRefusal(
      'token-unknown',
      'the enrollment token is not known: make one with `osr agent token`',
    );
  if (found.value.usedAt)
    throw new AgentRefusal(
      'token-used',
      `the enrollment token was already used (${found.value.usedAt}, by ${found.value.usedBy}): tokens are for one enrollment; make a new one with \`osr agent token\``,
    );
  if (Date.parse(found.value.expiresAt) <= Date.now())
    throw new AgentRefusal(
      'token-expired',
      `the enrollment token expired at ${found.value.expiresAt}: make a new one with \`osr agent token\``,
    );
  const proven = previous
    ? await authenticateAgent(vault, String(previous.agentId), String(previous.secret)).catch(() => undefined)
    : undefined;
  const agentId = proven?.id ?? `ag-${randomBytes(6).toString('hex')}`;
  try {
    await vault.write<AgentTokenRecord>(
      doc,
      { ...found.value, usedAt: new Date().toISOString(), usedBy: `${facts.hostname} (${agentId})` },
      found.etag,
    );
  } catch (err) {
    if (err instanceof VaultConflictError)
      throw new AgentRefusal(
        'token-used',
        'the enrollment token was used by another enrollment at the same moment',
      );
    throw err;
  }
  const secret = randomBytes(32).toString('base64url');
  const now = new Date().toISOString();
  await vault.write<AgentRecord>(
    agentDoc(agentId),
    { id: agentId, facts, enrolledAt: now, secretHash: hashSecret(secret), connected: false, listener },
    '*',
  );
  return { agentId, secret };
}

/** Checks an agent's credential; an unknown (or uninstalled) agent is refused for good. */
export async function authenticateAgent(vault: Vault, agentId: string, secret: string): Promise<AgentRecord> {
  let doc: string;
  try {
    doc = agentDoc(agentId);
  } catch {
    throw new AgentRefusal('agent-unknown', `"${agentId}" is not an agent id`);
  }
  const found = await vault.read<AgentRecord>(doc);
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(found?.value.secretHash ?? '00', 'hex');
  if (!found || a.length !== b.length || !timingSafeEqual(a, b))
    throw new AgentRefusal(
      'agent-unknown',
      `agent ${agentId} is not enrolled (uninstalled, or enrolled again elsewhere): enroll it with a new token`,
    );
  return found.value;
}

/**
 * Records a connection change or a sign of life (facts at each hello), and with `store` the room of
 * its point store (`report` undefined: none reported, the old record goes).
 */
export function markAgent(
  vault: Vault,
  agentId: string,
  change: Partial<
    Pick<AgentRecord, 'facts' | 'connected' | 'listener' | 'connectedAt' | 'lastSeenAt' | 'disconnectedAt'>
  >,
  store?: { report: StoreReport | undefined; settings: StoreAlertSettings },
): Promise<AgentRecord> {
  return vault.update<AgentRecord>(agentDoc(agentId), (current) => {
    if (!current) throw new AgentRefusal('agent-unknown', `agent ${agentId} was uninstalled`);
    const next: AgentRecord = { ...current, ...change };
    if (store?.report) next.store = recordStore(current.store, store.report, store.settings);
    else if (store) delete next.store;
    return next;
  });
}

/**
 * The point-store alerts of an agent, from its last reports in the vault: none for an unknown
 * agent, undefined when its record could not be read (nothing is known then).
 */
export async function agentStoreAlerts(
  vault: Vault,
  agentId: string,
  settings: StoreAlertSettings,
): Promise<AgentStoreAlert[] | undefined> {
  const read = await vault.read<AgentRecord>(agentDoc(agentId)).then(
    (doc) => ({ agent: doc?.value }),
    () => undefined,
  );
  if (!read) return undefined;
  const { agent } = read;
  return agent ? storeAlerts({ id: agent.id, hostname: agent.facts.hostname }, agent.store, settings) : [];
}
