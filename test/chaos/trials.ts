// What the fault suite (test/chaos/run.ts) runs and reports: victims, phases, one trial's
// outcome, waiting (and cleaning up, reading points) through an outage, and the summary table.
import { replicaBlobClient } from '../../activities/cloud-applier/replica-disk';
import type { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import type { RecoveryPoint } from '../../shared/replication-types';
import { pollFor } from '../helpers/poll';

export const VICTIMS = [
  'process-server',
  /** One of two process servers, not restarted: the other takes its work over (handover.ts). */
  'handover',
  'cloud-applier',
  'control',
  'master-target',
  'temporal',
  'azurite',
] as const;
export const PHASES = ['initial-sync', 'delta', 'drill', 'reprotect'] as const;
/** Faults other than a kill (faults.ts), each tried during the steady machine's delta cycles. */
export const FAULTS = ['throttle', 'disk-full', 'clock-skew', 'link', 'lost-temporal'] as const;
export type Victim = (typeof VICTIMS)[number];
export type Fault = (typeof FAULTS)[number];
export type Phase = (typeof PHASES)[number];
export const JOB_TIMEOUT_MS = 5 * 60_000;

export interface Trial {
  victim: Victim | Fault;
  phase: Phase;
  ok: boolean;
  lostWrites: number;
  corruptPoints: number;
  pointsChecked: number;
  /** Points the storage emulator forgot after a kill -9 (it saves its metadata every 5 s). */
  forgotten?: number;
  /** The activity Temporal showed the victim holding through the kill ('' or absent: none seen). */
  landedOn?: string;
  /** Writer records checked across the steady points of the trial. */
  records?: number;
  recoveryMs: number;
  note?: string;
  /** New faults: what the operator saw during the fault (state, health, alerts). */
  seen?: string;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Retries through the outage: the server or storage may be down or restarting. */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = JOB_TIMEOUT_MS,
): Promise<T> {
  return pollFor(fn, {
    timeoutMs,
    intervalMs: 250,
    failure: (last) =>
      new Error(`${what} did not happen within ${timeoutMs / 1000} s${last ? `: ${String(last)}` : ''}`),
  });
}

/** Cleans a drill up; 1 when storage forgot the drill's record after an Azurite crash. */
export async function cleanUp(ctx: ControlContext, job: string, victim: Victim): Promise<number> {
  try {
    await eventually('drill cleaned up', () => failover.cleanupTestFailover(ctx, job), 60_000);
    return 0;
  } catch (err) {
    if (victim === 'azurite' && /no drill to clean up/.test((err as Error).message)) return 1;
    throw err;
  }
}

/** Bytes of a point's disk0 image, read from its replica snapshot. */
export async function snapshotRange(
  ctx: ControlContext,
  point: RecoveryPoint,
  offset: number,
  length: number,
): Promise<Buffer> {
  const disk = point.disks.find((d) => d.diskId === 'disk0');
  if (!disk) throw new Error(`point ${point.id} has no disk0`);
  return eventually('read the point', () =>
    replicaBlobClient(ctx.blobService, disk.blob)
      .withSnapshot(disk.snapshot)
      .downloadToBuffer(offset, length),
  );
}

function percentile(values: number[], p: number): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export function printTable(trials: Trial[], log: (line: string) => void = console.log): void {
  const rows = [...new Set(trials.map((t) => `${t.victim}|${t.phase}`))].map((key) => {
    const [victim, phase] = key.split('|');
    const ts = trials.filter((t) => t.victim === victim && t.phase === phase);
    const rec = ts.filter((t) => t.ok || t.recoveryMs).map((t) => t.recoveryMs / 1000);
    return {
      victim,
      phase,
      trials: ts.length,
      'kills mid-work': ts.filter((t) => t.landedOn).length,
      failed: ts.filter((t) => !t.ok).length,
      'lost writes': ts.reduce((a, t) => a + t.lostWrites, 0),
      'corrupt points': ts.reduce((a, t) => a + t.corruptPoints, 0),
      'points checked': ts.reduce((a, t) => a + t.pointsChecked, 0),
      'records checked': ts.reduce((a, t) => a + (t.records ?? 0), 0),
      'forgotten by storage': ts.reduce((a, t) => a + (t.forgotten ?? 0), 0),
      'recovery s (median)': percentile(rec, 50).toFixed(1),
      'recovery s (max)': Math.max(0, ...rec).toFixed(1),
    };
  });
  const columns = Object.keys(rows[0] ?? {});
  const widths = columns.map((c) =>
    Math.max(c.length, ...rows.map((r) => String(r[c as keyof typeof r]).length)),
  );
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ');
  log(line(columns));
  for (const r of rows) log(line(columns.map((c) => String(r[c as keyof typeof r]))));
}
