// What the agent's tracking must remember across its own restarts, in one JSON file under
// /var/lib/osr-agent (OSR_AGENT_TRACKING_DIR): the protected disks, the era each last shipped
// at, and the frozen points. The change log itself is the era target's metadata on disk.
import fs from 'node:fs';
import path from 'node:path';
import { writeDurably } from './durable';

export interface TrackedDisk {
  /** The disk under the stack, e.g. /dev/vdb. */
  device: string;
  sizeBytes: number;
  /** Changes written in this era or later are not shipped yet; absent: nothing shipped (full). */
  shippedEra?: number;
  /** The boot the stack was built in (/proc/sys/kernel/random/boot_id). */
  bootId: string;
  /** Why the change log was started anew after earlier points: OSR must resync by checksums. */
  untrusted?: string;
}

export interface PointDisk {
  /** The snapshot's number (device osr-<disk>-p<n>). */
  n: number;
  /** What this point sends: written since this era; absent: the whole disk. */
  since?: number;
  /** Nothing: a point of these stopped disks already shipped (stop.ts). */
  none?: true;
  /** The era started at the freeze: shipped once the point is released with success. */
  era: number;
}

export interface FrozenPointRecord {
  pitId: string;
  /** Frozen while a planned failover stopped the writes (stop.ts). */
  stopped?: true;
  instant: string;
  /** 'freezing' until every disk's snapshot exists and writes flow again. */
  state: 'freezing' | 'frozen';
  disks: Record<string, PointDisk>;
}

export interface WriteStopRecord {
  disks: string[];
  /** The era each disk's checkpoint started: a point frozen while stopped counts it as shipped. */
  eras: Record<string, number>;
  stoppedAt: string;
  /** Wall clock (ms): a stop outlives the agent's process, so no monotonic clock spans it. */
  stoppedMs: number;
  /** The boot the stop was made in: only there is the committed era log all the disk's writes. */
  bootId?: string;
  /** A point frozen during the stop shipped: the replica is the stopped disks, nothing to send. */
  shipped?: true;
  /** Tracking was disabled while stopped (a committed failover): finished when writes resume. */
  disableOnResume?: true;
}

export interface TrackingState {
  disks: Record<string, TrackedDisk>;
  points: Record<string, FrozenPointRecord>;
  nextSnapshot: number;
  /** A planned failover's stop in force: kept across agent restarts (stop.ts). */
  stop?: WriteStopRecord;
  /** Written when the agent stopped cleanly in this boot: its change log was committed. */
  cleanShutdownBoot?: string;
}

export function trackingDir(): string {
  return process.env.OSR_AGENT_TRACKING_DIR ?? '/var/lib/osr-agent';
}

const file = (): string => path.join(trackingDir(), 'tracking.json');

export function loadTracking(): TrackingState {
  try {
    return JSON.parse(fs.readFileSync(file(), 'utf8')) as TrackingState;
  } catch {
    return { disks: {}, points: {}, nextSnapshot: 1 };
  }
}

/** Durably (durable.ts): a crash leaves the old state or the new, never half. */
export function saveTracking(state: TrackingState): void {
  fs.mkdirSync(trackingDir(), { recursive: true, mode: 0o700 });
  writeDurably(file(), `${JSON.stringify(state, null, 2)}\n`);
}

export function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}
