// Mobility agents as the control plane sees them: enrollment tokens (`osr agent token`), the
// enrolled agents in the vault (list, show, uninstall) and the listeners of the process servers
// they dial. Agents talk only to process servers; this reads and writes the vault.
import type { DiscoveredMachine } from '../shared/host-types';
import type { ProtectedMachine } from '../shared/replication-types';
import {
  AGENTS_PREFIX,
  agentDoc,
  createAgentToken,
  LISTENERS_PREFIX,
  type AgentRecord,
  type ListenerRecord,
} from '../lib/agents/registry';
import { shippedAgentVersion } from '../lib/agents/bundle-source';
import { storeAlerts, type AgentStoreAlert, type StoreAlertSettings } from '../lib/agents/store-alerts';
import { audited, currentActor } from './audit';
import { OperationError, type ControlContext } from './context';

/** An agent whose listener wrote no sign of life for this long is shown disconnected. */
const STALE_MS = 150_000;

export interface AgentView extends Omit<AgentRecord, 'secretHash'> {
  state: 'connected' | 'disconnected';
  /** What the agent said at its last hello: package version + build hash of its bundle. */
  version: string;
  /** The version this release ships (`osr agent install` and `upgrade`); absent: no compiled agent. */
  shippedVersion?: string;
  /** The agent runs another version than the shipped one: `osr agent upgrade` it. */
  outdated: boolean;
  /** Its point store low on room or overflowing (lib/agents/store-alerts.ts); empty when fine. */
  alerts: AgentStoreAlert[];
}

function view(
  record: AgentRecord,
  shipped: string | undefined,
  settings: StoreAlertSettings,
  now = Date.now(),
): AgentView {
  const { secretHash: _secret, ...rest } = record;
  const fresh = record.lastSeenAt !== undefined && now - Date.parse(record.lastSeenAt) < STALE_MS;
  const version = record.facts.agentVersion;
  return {
    ...rest,
    state: record.connected && fresh ? 'connected' : 'disconnected',
    version,
    ...(shipped ? { shippedVersion: shipped } : {}),
    outdated: shipped !== undefined && version !== shipped,
    alerts: storeAlerts({ id: record.id, hostname: record.facts.hostname }, record.store, settings),
  };
}

/** The agent version this control plane ships (agents.bundleDir, or this release's). */
export const shippedVersion = (ctx: ControlContext): string | undefined =>
  shippedAgentVersion(ctx.config.agents.bundleDir);

export async function listAgents(ctx: ControlContext): Promise<AgentView[]> {
  const now = Date.now();
  const shipped = shippedVersion(ctx);
  return (await ctx.vault.list<AgentRecord>(AGENTS_PREFIX))
    .map((a) => view(a, shipped, ctx.config.agents, now))
    .sort((a, b) => a.facts.hostname.localeCompare(b.facts.hostname));
}

export async function getAgent(ctx: ControlContext, id: string): Promise<AgentView> {
  let doc: string;
  try {
    doc = agentDoc(id);
  } catch (err) {
    throw new OperationError((err as Error).message, 'invalid');
  }
  const found = (await ctx.vault.read<AgentRecord>(doc))?.value;
  if (found) return view(found, shippedVersion(ctx), ctx.config.agents);
  const known = (await listAgents(ctx)).map((a) => `${a.id} (${a.facts.hostname})`);
  throw new OperationError(
    `no agent ${id}${known.length ? `; enrolled: ${known.join(', ')}` : '; none is enrolled (`osr agent install --ssh root@<machine>`)'}`,
    'not-found',
  );
}

export async function listListeners(ctx: ControlContext): Promise<ListenerRecord[]> {
  return ctx.vault.list<ListenerRecord>(LISTENERS_PREFIX);
}

/** The listener agents should dial: the one named, or the only one there is. */
export async function chooseListener(ctx: ControlContext, server?: string): Promise<ListenerRecord> {
  const all = await listListeners(ctx);
  const found = server ? all.find((l) => l.address === server) : all.length === 1 ? all[0] : undefined;
  if (found) return found;
  if (!all.length)
    throw new OperationError(
      'no process server listens for agents yet: start one (`osr stack up`, or `node dist/workers/process-server.js`; agents.port, default 9443)',
      'unavailable',
    );
  throw new OperationError(
    `${server ? `no agent listener at ${server}` : 'several process servers listen for agents'}; choose one with --server: ${all.map((l) => l.address).join(', ')}`,
    'invalid',
  );
}

export interface AgentTokenResult {
  token: string;
  expiresAt: string;
  server: string;
  fingerprint: string;
  /** The command that enrolls a machine by hand. */
  command: string;
}

export const makeAgentToken = audited(
  'agent.token',
  async (ctx: ControlContext, input: { ttlSeconds?: number; server?: string }): Promise<AgentTokenResult> => {
    const ttl = input.ttlSeconds ?? 3600;
    if (!Number.isInteger(ttl) || ttl < 10 || ttl > 7 * 86400)
      throw new OperationError('token lifetime: 10 s to 7 days (e.g. --expires 1h)', 'invalid');
    const listener = await chooseListener(ctx, input.server);
    const actor = currentActor();
    const { token, expiresAt } = await createAgentToken(ctx.vault, ttl, `${actor.user}@${actor.host}`);
    return {
      token,
      expiresAt,
      server: listener.address,
      fingerprint: listener.fingerprint,
      command: `osr-agent enroll --server ${listener.address} --token ${token} --fingerprint ${listener.fingerprint}`,
    };
  },
  (_ctx, input) => ({ target: input.server ?? 'agents', details: { ttlSeconds: input.ttlSeconds } }),
);

/** Forgets an agent: its credential is refused from then on and the agent stops itself. */
export const forgetAgent = audited(
  'agent.uninstall',
  async (ctx: ControlContext, id: string): Promise<AgentView> => {
    const agent = await getAgent(ctx, id);
    await ctx.vault.remove(agentDoc(id));
    return agent;
  },
  (_ctx, id) => ({ target: id }),
);

/** The protected machine each agent serves (`osr protect --agent`), by agent id. */
export function agentProtections(machines: ProtectedMachine[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of machines) if (m.source.type === 'agent') out.set(m.source.agentId, m.name);
  return out;
}

/** Enrolled agents as `osr discover` lists machines (host "agent"). */
export function agentMachines(
  agents: AgentView[],
  protectedBy = new Map<string, string>(),
): DiscoveredMachine[] {
  return agents.map((a) => ({
    host: 'agent',
    name: a.facts.hostname,
    state: a.state,
    ...(protectedBy.has(a.id) ? { protectedAs: protectedBy.get(a.id) } : {}),
    disks: a.facts.disks.map((d) => ({ diskId: d.name, sizeBytes: d.sizeBytes, location: `/dev/${d.name}` })),
    changeTracking: {
      possible: false,
      reason: `enrolled Mobility agent: protect it with \`osr protect <name> --agent ${a.id} --disks <disks not in use>\``,
    },
    guestOs: a.facts.os,
    details: {
      agentId: a.id,
      machineId: a.facts.machineId,
      kernel: a.facts.kernel,
      agentVersion: a.version,
      ...(a.vm ? { vm: `${a.vm.host}/${a.vm.vm}` } : {}),
      ...(a.outdated
        ? { outdated: `this release ships ${a.shippedVersion}: osr agent upgrade ${a.id}` }
        : {}),
    },
  }));
}

/**
 * vCenter VMs with a linked agent, as `osr discover` shows them: `agentId` set and the reason says
 * how to protect them (changeTracking.possible stays false: the host still tracks nothing).
 */
export function markAgentVms(
  machines: DiscoveredMachine[],
  agents: AgentView[],
  protectedBy = new Map<string, string>(),
): DiscoveredMachine[] {
  return machines.map((m) => {
    const agent = agents.find((a) => a.vm?.host === m.host && a.vm.moref === m.details?.vmId);
    if (!agent) return m;
    const protectedAs = protectedBy.get(agent.id);
    return {
      ...m,
      agentId: agent.id,
      ...(protectedAs ? { protectedAs } : {}),
      changeTracking: {
        possible: false,
        reason: `protectable through agent ${agent.id}: \`osr protect <name> --agent ${agent.id} --disks <disks>\``,
      },
    };
  });
}
