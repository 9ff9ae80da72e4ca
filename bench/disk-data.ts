// The data the benchmark writes to its test disks: a layout of allocated runs and holes, and
// 64 KiB blocks of random bytes (incompressible), log-like text (zstd level 1 takes it to about a
// third) or zeros. Seeded, so every run lays out the same disk.
import { randomFillSync } from 'node:crypto';
import type { NbdClient } from '../lib/qemu/nbd-client';

export const BLOCK_BYTES = 64 * 1024;
const TEXT_CORPUS_BYTES = 16 * 1024 * 1024;
/** Writes in flight to the NBD export while filling: enough to keep qemu-storage-daemon busy. */
const WRITES_IN_FLIGHT = 8;
const WRITE_BYTES = 4 * 1024 * 1024;

export type BlockKind = 'random' | 'text' | 'zero';

/** mulberry32: a small, fast, seeded generator of floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let corpus: Buffer | undefined;

// Log lines with timestamps, levels, ids and durations: a stand-in for the text files, logs and
// databases of a real disk. Blocks are slices at random places, so no two blocks are equal.
function textCorpus(): Buffer {
  if (corpus) return corpus;
  const rand = seededRandom(0x7e57);
  const levels = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR'];
  const parts = ['api', 'db', 'cache', 'auth', 'queue', 'scheduler', 'backup', 'mailer'];
  const words = [
    'request',
    'served',
    'user',
    'session',
    'opened',
    'closed',
    'retry',
    'timeout',
    'query',
    'rows',
    'commit',
    'flush',
    'connection',
    'from',
    'to',
    'for',
    'order',
    'invoice',
    'item',
    'status',
  ];
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)] as T;
  const lines: string[] = [];
  let size = 0;
  let ms = Date.UTC(2026, 10, 25, 6, 0, 0);
  while (size < TEXT_CORPUS_BYTES) {
    ms += Math.floor(rand() * 900);
    const n = 3 + Math.floor(rand() * 8);
    const text = Array.from({ length: n }, () => pick(words)).join(' ');
    const line =
      `${new Date(ms).toISOString()} ${pick(levels)} ${pick(parts)}[${1000 + Math.floor(rand() * 9000)}]: ` +
      `${text} id=${Math.floor(rand() * 1e9).toString(16)} took ${Math.floor(rand() * 5000)}ms\n`;
    lines.push(line);
    size += line.length;
  }
  corpus = Buffer.from(lines.join(''), 'latin1');
  return corpus;
}

/** A fresh block of the given kind, written into `into` at `at`. */
export function fillBlock(into: Buffer, at: number, kind: BlockKind, rand: () => number): void {
  const block = into.subarray(at, at + BLOCK_BYTES);
  if (kind === 'random') randomFillSync(block);
  else if (kind === 'zero') block.fill(0);
  else {
    const text = textCorpus();
    const from = Math.floor(rand() * (text.length - BLOCK_BYTES));
    text.copy(block, 0, from, from + BLOCK_BYTES);
  }
}

/** Kind of the next block: `zeroShare` zeros, the rest half random, half text. */
export function pickKind(rand: () => number, zeroShare: number): BlockKind {
  const r = rand();
  if (r < zeroShare) return 'zero';
  return r < zeroShare + (1 - zeroShare) / 2 ? 'random' : 'text';
}

export interface Extent {
  offset: number;
  length: number;
}

/**
 * Alternating holes and allocated runs of 64 KiB to 8 MiB (mean about 4 MiB each), so about
 * `share` of the disk holds data, in runs that are neither all tiny nor all segment-sized.
 */
export function allocationPlan(diskBytes: number, share: number, seed: number): Extent[] {
  const rand = seededRandom(seed);
  const runs: Extent[] = [];
  const maxBlocks = 128;
  for (let at = 0; at < diskBytes; ) {
    const meanBlocks = (maxBlocks + 1) / 2;
    const hole = Math.floor(rand() * (maxBlocks + 1) * ((1 - share) / share)) * BLOCK_BYTES;
    at += hole;
    if (at >= diskBytes) break;
    const blocks = 1 + Math.floor(rand() * (2 * meanBlocks - 1));
    const length = Math.min(blocks * BLOCK_BYTES, diskBytes - at);
    runs.push({ offset: at, length });
    at += length;
  }
  return runs;
}

export interface FillStats {
  allocatedBytes: number;
  randomBytes: number;
  textBytes: number;
  zeroBytes: number;
}

/** Writes every run of `plan` with mixed blocks (`zeroShare` of them zeros) and flushes. */
export async function fillDisk(
  nbd: NbdClient,
  plan: readonly Extent[],
  zeroShare: number,
  seed: number,
): Promise<FillStats> {
  const rand = seededRandom(seed);
  const stats: FillStats = { allocatedBytes: 0, randomBytes: 0, textBytes: 0, zeroBytes: 0 };
  const pieces: Extent[] = [];
  for (const run of plan) {
    for (let done = 0; done < run.length; done += WRITE_BYTES)
      pieces.push({ offset: run.offset + done, length: Math.min(WRITE_BYTES, run.length - done) });
  }
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < pieces.length) {
      const piece = pieces[next++] as Extent;
      const buf = Buffer.allocUnsafe(piece.length);
      for (let at = 0; at < piece.length; at += BLOCK_BYTES) {
        const kind = pickKind(rand, zeroShare);
        fillBlock(buf, at, kind, rand);
        stats[kind === 'random' ? 'randomBytes' : kind === 'text' ? 'textBytes' : 'zeroBytes'] += BLOCK_BYTES;
      }
      await nbd.write(piece.offset, buf);
      stats.allocatedBytes += piece.length;
    }
  };
  await Promise.all(Array.from({ length: WRITES_IN_FLIGHT }, lane));
  await nbd.flush();
  return stats;
}

export interface ScatteredChange {
  blocks: number;
  bytes: number;
  /** The changed blocks' new content, in disk order: what a delta must carry. */
  data: Buffer;
}

/**
 * Writes `changeBytes` as 64 KiB blocks at distinct random aligned offsets, half random, half
 * text (a changed block of zeros would flatter any compressor), and flushes.
 */
export async function scatteredChange(
  nbd: NbdClient,
  diskBytes: number,
  changeBytes: number,
  seed: number,
): Promise<ScatteredChange> {
  const rand = seededRandom(seed);
  const slots = Math.floor(diskBytes / BLOCK_BYTES);
  const count = Math.floor(changeBytes / BLOCK_BYTES);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(Math.floor(rand() * slots));
  const offsets = [...chosen].sort((a, b) => a - b).map((s) => s * BLOCK_BYTES);
  const data = Buffer.allocUnsafe(count * BLOCK_BYTES);
  offsets.forEach((_, i) => fillBlock(data, i * BLOCK_BYTES, pickKind(rand, 0), rand));
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < offsets.length) {
      const i = next++;
      await nbd.write(offsets[i] as number, data.subarray(i * BLOCK_BYTES, (i + 1) * BLOCK_BYTES));
    }
  };
  await Promise.all(Array.from({ length: WRITES_IN_FLIGHT }, lane));
  await nbd.flush();
  return { blocks: count, bytes: count * BLOCK_BYTES, data };
}
