// The room of an agent's point store, judged (like the process server's own state disk,
// lib/observability/state-disk.ts): the agent reports the free space of the filesystem holding
// its tracking folder with each heartbeat (agent/tracking/store-space.ts); under a threshold OSR
// raises `agent-store-low` (warning) with the free bytes, the threshold and the fix, and while
// points are given up because their copy-on-write store could not grow, `agent-store-full`
// (critical), until a later point is kept. Both clear by themselves. Pure: the listener records,
// the control plane shows (agent views, the protected machine's status and `osr alerts`).
import type { StoreReport } from '../../agent/protocol';

export interface StoreAlertSettings {
  /** The threshold's floor: alert under this much free (agents.storeFreeAlertBytes). */
  storeFreeAlertBytes: number;
  /** And under this many times the largest recent point's store (agents.storeFreeAlertPoints). */
  storeFreeAlertPoints: number;
}

export const DEFAULT_STORE_ALERT: StoreAlertSettings = {
  storeFreeAlertBytes: 1024 * 1024 * 1024,
  storeFreeAlertPoints: 4,
};

/** On a filesystem smaller than ten floors, the floor is this share of it (a small machine's disk). */
export const FLOOR_SHARE = 0.1;

/** A report as the vault keeps it: when it came, and since when the store has been low. */
export interface RecordedStore extends StoreReport {
  at: string;
  lowSince?: string;
}

export interface AgentStoreAlert {
  /** Stable for one episode: `<kind>-<start ms>`. */
  id: string;
  kind: 'agent-store-low' | 'agent-store-full';
  severity: 'warning' | 'critical';
  at: string;
  message: string;
  count?: number;
  lastAt?: string;
}

/**
 * Free space under which the store is low: the floor (at most FLOOR_SHARE of the filesystem), or
 * room for `storeFreeAlertPoints` points as large as the largest recent one, whichever is more.
 */
export function storeThreshold(r: StoreReport, s: StoreAlertSettings): number {
  const floor = Math.min(s.storeFreeAlertBytes, FLOOR_SHARE * r.sizeBytes);
  return Math.round(Math.max(floor, s.storeFreeAlertPoints * (r.largestPointBytes ?? 0)));
}

/** A filesystem of unknown size (statfs says 0: a ramfs) is never judged low. */
export function storeLow(r: StoreReport, s: StoreAlertSettings): boolean {
  return r.sizeBytes > 0 && r.freeBytes < storeThreshold(r, s);
}

/**
 * What changes the alerts: the listener writes a report at once when this changes. While low, the
 * free space in eighths of the threshold too, so the alert's figure follows a store that fills.
 */
export function storeKey(r: StoreReport, s: StoreAlertSettings): string {
  const low = storeLow(r, s) ? Math.round(r.freeBytes / (storeThreshold(r, s) / 8)) : 'room';
  return `${low}|${r.overflow?.since ?? ''}|${r.overflow?.count ?? 0}`;
}

/** A report as recorded, low since the earlier record's start if it was low already. */
export function recordStore(
  previous: RecordedStore | undefined,
  r: StoreReport,
  s: StoreAlertSettings,
  now = new Date(),
): RecordedStore {
  const at = now.toISOString();
  const low = storeLow(r, s);
  return { ...r, at, ...(low ? { lowSince: previous?.lowSince ?? at } : {}) };
}

const bytes = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const text = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;

/** An agent's report as the listener accepts it, or undefined (absent or malformed: not recorded). */
export function checkStoreReport(v: unknown): StoreReport | undefined {
  const r = v as Partial<StoreReport> | undefined;
  if (!r || !text(r.dir, 4096) || !bytes(r.freeBytes) || !bytes(r.sizeBytes)) return undefined;
  if (r.largestPointBytes !== undefined && !bytes(r.largestPointBytes)) return undefined;
  const o = r.overflow;
  if (o !== undefined && (!text(o.since, 40) || !text(o.at, 40) || !bytes(o.count) || !text(o.message, 2000)))
    return undefined;
  return {
    dir: r.dir,
    freeBytes: r.freeBytes,
    sizeBytes: r.sizeBytes,
    ...(r.largestPointBytes !== undefined ? { largestPointBytes: r.largestPointBytes } : {}),
    ...(o ? { overflow: { since: o.since, at: o.at, count: o.count, message: o.message } } : {}),
  };
}

const mib = (n: number): string => `${(n / (1024 * 1024)).toFixed(1)} MiB`;

/** The alerts of one agent's store (none when it has room and no point was given up). */
export function storeAlerts(
  agent: { id: string; hostname: string },
  store: RecordedStore | undefined,
  s: StoreAlertSettings,
): AgentStoreAlert[] {
  if (!store) return [];
  const where = `agent ${agent.id} on ${agent.hostname}`;
  const fix = `Fix: free space on the filesystem holding ${store.dir} on ${agent.hostname}, or grow it`;
  const out: AgentStoreAlert[] = [];
  const o = store.overflow;
  if (o)
    out.push({
      id: `agent-store-full-${Date.parse(o.since)}`,
      kind: 'agent-store-full',
      severity: 'critical',
      at: o.since,
      count: o.count,
      lastAt: o.at,
      message:
        `${where}: ${o.count} point(s) given up since ${o.since} because the filesystem holding ${store.dir} is full ` +
        `(${mib(store.freeBytes)} free at ${store.at}); the machine's writes went on and their changes go with the next point ` +
        `(last: ${o.message}). ${fix}; the alert clears when a point is kept.`,
    });
  if (storeLow(store, s)) {
    const threshold = storeThreshold(store, s);
    const largest = store.largestPointBytes
      ? `, or ${s.storeFreeAlertPoints}× the largest recent point store (${mib(store.largestPointBytes)})`
      : '';
    const since = store.lowSince ?? store.at;
    out.push({
      id: `agent-store-low-${Date.parse(since)}`,
      kind: 'agent-store-low',
      severity: 'warning',
      at: since,
      message:
        `${where}: the filesystem holding ${store.dir} has ${mib(store.freeBytes)} free of ${mib(store.sizeBytes)} ` +
        `(${store.freeBytes} bytes at ${store.at}; alert under ${mib(threshold)}: ${mib(s.storeFreeAlertBytes)} ` +
        `or ${FLOOR_SHARE * 100} % of the filesystem, whichever is less${largest}). Each point's copy-on-write store ` +
        `grows there by the old data of every block the machine rewrites while the point is read; when it is full ` +
        `the point is given up and its cycle fails. ${fix}.`,
    });
  }
  return out;
}
