// Health of OSR's worker processes, like Azure Site Recovery's process-server health: each worker
// writes a small heartbeat document to the vault (servers/<role>-<host>-<pid>.json) every
// health.heartbeatSeconds; readers mark a server stale when its heartbeat is older than
// health.staleSeconds. Pure types and reading; the writer is workers/heartbeat.ts.
import type { OsrConfig } from '../config/config';
import type { Vault } from '../azure/vault';
import type { RejectionCount } from './rejections';

export const SERVERS_PREFIX = 'servers/';

/** An alert a worker raises about itself (memory or backlog pressure), stable while it lasts. */
export interface ServerAlert {
  /** Stable for one episode: `<kind>-<start ms>`. */
  id: string;
  kind: 'memory-pressure' | 'backlog-pressure' | 'state-disk-full';
  severity: 'warning' | 'critical';
  at: string;
  message: string;
}

export interface PipelineHealth {
  threads: number;
  bytesInFlight: number;
  maxBytesInFlight: number;
  /** Calls waiting for room under maxBytesInFlight right now: the process server's backlog. */
  waiting: number;
  rawBytesIn: number;
  segmentBytesOut: number;
  compressionRatio: number;
  /** Raw bytes encoded per second since the previous heartbeat. */
  throughputBytesPerSecond: number;
}

export interface NotifierHealth {
  passes: number;
  lastPassAt?: string;
  lastError?: string;
  webhook?: string;
  sent: number;
  pending: number;
}

export interface ServerHeartbeat {
  id: string;
  role: string;
  site: string;
  host: string;
  pid: number;
  taskQueue: string;
  /** A process server started for hosts (`--host`): the hosts whose machines it serves. */
  hosts?: string[];
  startedAt: string;
  at: string;
  /** CPU of this process since the previous heartbeat, percent of one core. */
  cpuPercent: number;
  rssBytes: number;
  heapUsedBytes: number;
  heapLimitBytes: number;
  /** Event-loop delay over the last interval (ms). */
  eventLoopLagMs: { mean: number; p99: number; max: number };
  activitiesInFlight?: number;
  workflowActivationsInFlight?: number;
  pipeline?: PipelineHealth;
  /** Where this worker's Temporal SDK metrics are served (Prometheus text), on its host. */
  sdkMetricsUrl?: string;
  alerts: ServerAlert[];
  notifier?: NotifierHealth;
  /** Input the parsers facing the network refused since the worker started (lib/observability/rejections.ts). */
  rejections?: RejectionCount[];
  heartbeatSeconds: number;
}

export interface ServerView extends ServerHeartbeat {
  /** Seconds since the last heartbeat. */
  ageSeconds: number;
  stale: boolean;
}

export const serverDoc = (id: string) => `${SERVERS_PREFIX}${id}.json`;

export function serverId(role: string, host: string, pid: number): string {
  return `${role}-${host.toLowerCase().replace(/[^a-z0-9.-]/g, '-')}-${pid}`;
}

export function viewServer(
  hb: ServerHeartbeat,
  config: Pick<OsrConfig, 'health'>,
  now = Date.now(),
  storageAgeSeconds?: number,
): ServerView {
  // The storage service's clock where it told: a worker whose own clock is off (its heartbeat's
  // `at`) is not taken for silent, nor a silent one for live.
  const ageSeconds = storageAgeSeconds ?? Math.max(0, Math.round((now - Date.parse(hb.at)) / 1000));
  return { ...hb, ageSeconds, stale: ageSeconds > config.health.staleSeconds };
}

/** Every server with a heartbeat on record, role then host order; stale ones marked. */
export async function listServers(vault: Vault, config: Pick<OsrConfig, 'health'>): Promise<ServerView[]> {
  const docs = await vault.listAged<ServerHeartbeat>(SERVERS_PREFIX);
  const now = Date.now();
  return docs
    .map((d) => viewServer(d.value, config, now, d.ageSeconds))
    .sort((a, b) => a.role.localeCompare(b.role) || a.id.localeCompare(b.id));
}

/** How a host's process servers stand: live ones, and stale ones still on record. */
export interface HostServers {
  host: string;
  live: string[];
  stale: string[];
}

/** For each host, its process servers (those started with `--host <host>`) by liveness. */
export function hostServers(servers: ServerView[], hosts: string[]): HostServers[] {
  return hosts.map((host) => {
    const mine = servers.filter((s) => s.role === 'process-server' && s.hosts?.includes(host));
    return {
      host,
      live: mine.filter((s) => !s.stale).map((s) => s.id),
      stale: mine.filter((s) => s.stale).map((s) => s.id),
    };
  });
}

/** Why a host has no live process server (its machines stall), or undefined when it has one. */
export function hostServerProblem(h: HostServers, heartbeatSeconds: number): string | undefined {
  if (h.live.length) return undefined;
  const why = h.stale.length
    ? `every process server of host ${h.host} is stale (${h.stale.join(', ')}: no heartbeat within ${heartbeatSeconds} s intervals)`
    : `no process server of host ${h.host} is running`;
  return `${why}: its machines are not replicated. Start one where the host is reachable: \`node dist/workers/process-server.js --host ${h.host}\``;
}
