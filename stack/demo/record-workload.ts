// A workload that proves write order: it writes sequence-numbered 4 KiB records, each to its own
// slot scattered over the disk, and counts a record as acknowledged when the NBD write returns.
// A crash-consistent image must then hold exactly a prefix 1..k of the sequence. The demo
// machine runs it, and the replication tests check recovery points with `checkRecords`.
import { createHash } from 'node:crypto';

export const RECORD_BYTES = 4096;
const MAGIC = Buffer.from('OSRREC01', 'latin1');

export interface RecordLayout {
  /** First byte of the record area. */
  baseOffset: number;
  /** Number of 4 KiB slots; records beyond it wrap around (only use fewer records than slots). */
  slots: number;
}

export interface RecordWriter {
  write(offset: number, data: Buffer): Promise<void>;
}

/** The demo workload's layout on a disk of this size: the disk's second half (demo-workload.ts). */
export function demoLayout(size: number): RecordLayout {
  const half = Math.floor(size / 2 / RECORD_BYTES) * RECORD_BYTES;
  return { baseOffset: half, slots: Math.floor((size - half) / RECORD_BYTES) };
}

/** Slot of record `seq`: a fixed permutation that scatters consecutive records over the area. */
export function slotOf(seq: number, layout: RecordLayout): number {
  const stride = strideFor(layout.slots);
  return Number((BigInt(seq) * BigInt(stride)) % BigInt(layout.slots));
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function strideFor(slots: number): number {
  let stride = Math.floor(slots * 0.618) | 1;
  while (gcd(stride, slots) !== 1) stride += 2;
  return stride;
}

export function encodeRecord(seq: number, writer = 'osr'): Buffer {
  const buf = Buffer.alloc(RECORD_BYTES);
  MAGIC.copy(buf, 0);
  buf.writeBigUInt64BE(BigInt(seq), 8);
  buf.write(writer.slice(0, 32), 16, 'utf8');
  // Fill with pseudo-random but reproducible bytes so records do not compress to nothing.
  let x = seq * 2654435761;
  for (let i = 64; i < RECORD_BYTES - 32; i += 4) {
    x = (x * 1103515245 + 12345) >>> 0;
    buf.writeUInt32BE(x, i);
  }
  createHash('sha256')
    .update(buf.subarray(0, RECORD_BYTES - 32))
    .digest()
    .copy(buf, RECORD_BYTES - 32);
  return buf;
}

/** The sequence number of a valid record, or undefined for anything else (zeros, torn data). */
export function decodeRecord(buf: Buffer): number | undefined {
  if (buf.length < RECORD_BYTES || !buf.subarray(0, 8).equals(MAGIC)) return undefined;
  const sum = createHash('sha256')
    .update(buf.subarray(0, RECORD_BYTES - 32))
    .digest();
  if (!sum.equals(buf.subarray(RECORD_BYTES - 32, RECORD_BYTES))) return undefined;
  return Number(buf.readBigUInt64BE(8));
}

export class RecordWorkload {
  private nextSeq = 1;
  /** Highest sequence number whose write (and every earlier one) was acknowledged. */
  acknowledged = 0;

  constructor(
    private readonly writer: RecordWriter,
    readonly layout: RecordLayout,
    private readonly name = 'osr',
  ) {}

  /** Writes the next record; resolves once the write is acknowledged. Writes are strictly sequential. */
  async writeNext(): Promise<number> {
    const seq = this.nextSeq++;
    await this.writer.write(
      this.layout.baseOffset + slotOf(seq, this.layout) * RECORD_BYTES,
      encodeRecord(seq, this.name),
    );
    this.acknowledged = seq;
    return seq;
  }
}

export interface RecordCheck {
  /** Highest k such that records 1..k are all present. */
  prefix: number;
  /** Records present beyond the prefix: a write order violation if any. */
  outOfOrder: number[];
}

/** Checks an image (read through `read`) for the records 1..maxSeq. */
export async function checkRecords(
  read: (offset: number, length: number) => Promise<Buffer>,
  layout: RecordLayout,
  maxSeq: number,
): Promise<RecordCheck> {
  let prefix = 0;
  let gap = false;
  const outOfOrder: number[] = [];
  for (let seq = 1; seq <= maxSeq; seq++) {
    const data = await read(layout.baseOffset + slotOf(seq, layout) * RECORD_BYTES, RECORD_BYTES);
    const present = decodeRecord(data) === seq;
    if (present && !gap) prefix = seq;
    else if (present) outOfOrder.push(seq);
    else gap = true;
  }
  return { prefix, outOfOrder };
}
