// The fault suite's source of truth: one sequence-numbered writer on the steady machine's disk that
// runs for the whole suite, through every fault, and records when each record was issued and
// acknowledged. Any image of the disk (a recovery point, a drill or failover disk) is then
// checked against the source at an instant: it must hold every record acknowledged before that
// instant, no record issued after it, and no record beyond a gap (write order).
import {
  checkRecords,
  encodeRecord,
  RECORD_BYTES,
  slotOf,
  type RecordLayout,
} from '../../stack/demo/record-workload';
import type { NbdClient } from '../../lib/qemu/nbd-client';

/** Records fill one region after another; a region is small so a point check reads little. */
export const REGION_BYTES = 2 * 1024 * 1024;
const SLOTS = REGION_BYTES / RECORD_BYTES;
/** A point's instant is taken right before QEMU drains the disks (cbt-connector.ts): records issued
 * in the moments after it may still be in; anything issued later than this is from the future. */
export const FREEZE_SLACK_MS = 5000;

interface Region {
  layout: RecordLayout;
  name: string;
  /** Issue and acknowledgement times of its records 1..n (index n-1). */
  issuedAt: number[];
  ackedAt: number[];
}

export interface ImageCheck {
  /** Records acknowledged before the instant and missing from the image. */
  lost: number;
  /** Records present that were issued after the instant, or beyond a gap: not the source at any instant. */
  corrupt: number;
  /** Records checked (present or required). */
  records: number;
  /** When each lost record was acknowledged (the suite tells storage forgetting from loss by it). */
  lostAckedAt: number[];
  /** The first region found wrong, for the report. */
  detail?: string;
}

export class ContinuousWriter {
  private readonly regions: Region[] = [];
  private running = false;
  private loop?: Promise<void>;
  /** Set when the disk ran out of regions (the suite reports it). */
  stopReason?: string;
  /** Source writes that failed (each retried until it succeeds): the protected machine's I/O errors. */
  failedWrites = 0;
  lastWriteError?: string;

  constructor(
    private readonly disk: NbdClient,
    private readonly diskBytes: number,
    /** Pause between records: sets the write rate (about 1000/intervalMs records a second). */
    private readonly intervalMs = 100,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Records acknowledged so far (all regions). */
  get acknowledged(): number {
    return this.regions.reduce((a, r) => a + r.ackedAt.length, 0);
  }

  /** Records acknowledged before `instant`. */
  ackedBefore(instant: number): number {
    return this.regions.reduce((a, r) => a + r.ackedAt.filter((t) => t < instant).length, 0);
  }

  /** The region being written now (checks of what was written from now on start there). */
  get currentRegion(): number {
    return Math.max(0, this.regions.length - 1);
  }

  /** Bytes of the disk written so far (whole regions from offset 0). */
  get usedBytes(): number {
    return this.regions.length * REGION_BYTES;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let region = this.regions.at(-1);
      if (!region || region.issuedAt.length >= SLOTS) {
        if ((this.regions.length + 1) * REGION_BYTES > this.diskBytes) {
          this.stopReason = `the steady disk is full after ${this.acknowledged} records: a larger disk or a slower writer`;
          return;
        }
        const layout = { baseOffset: this.regions.length * REGION_BYTES, slots: SLOTS };
        region = {
          layout,
          name: `w${this.regions.length}`,
          issuedAt: [],
          ackedAt: [],
        };
        this.regions.push(region);
      }
      region.issuedAt.push(Date.now());
      const seq = region.issuedAt.length;
      const offset = region.layout.baseOffset + slotOf(seq, region.layout) * RECORD_BYTES;
      // A failed write is retried (the same record, still in flight) until the source takes it.
      while (!(await this.tryWrite(offset, encodeRecord(seq, region.name)))) {
        if (!this.running) return;
        await new Promise((r) => setTimeout(r, 500));
      }
      region.ackedAt.push(Date.now());
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }

  private async tryWrite(offset: number, record: Buffer): Promise<boolean> {
    try {
      await this.disk.write(offset, record);
      return true;
    } catch (err) {
      this.failedWrites += 1;
      this.lastWriteError = (err as Error).message;
      return false;
    }
  }

  /**
   * Checks an image of regions `from`.. against the source at `instant`; `read` returns bytes of
   * the image at disk offsets (it is given one whole region at a time).
   */
  async check(
    read: (offset: number, length: number) => Promise<Buffer>,
    instant: number,
    from = 0,
  ): Promise<ImageCheck> {
    const result: ImageCheck = { lost: 0, corrupt: 0, records: 0, lostAckedAt: [] };
    for (const region of this.regions.slice(from)) {
      const issued = region.issuedAt.length;
      if (!issued) continue;
      const required = region.ackedAt.filter((t) => t < instant).length;
      const mayHold = region.issuedAt.filter((t) => t <= instant + FREEZE_SLACK_MS).length;
      const data = await read(region.layout.baseOffset, REGION_BYTES);
      const check = await checkRecords(
        async (o, l) => data.subarray(o - region.layout.baseOffset, o - region.layout.baseOffset + l),
        region.layout,
        Math.min(SLOTS, issued + 8),
      );
      const present = new Set(check.outOfOrder);
      for (let seq = 1; seq <= check.prefix; seq++) present.add(seq);
      const highest = Math.max(0, ...present);
      let lost = 0;
      let corrupt = 0;
      const lose = (seq: number) => {
        lost += 1;
        result.lostAckedAt.push(region.ackedAt[seq - 1] as number);
      };
      for (let seq = 1; seq <= Math.max(highest, required); seq++) {
        if (present.has(seq))
          corrupt += seq > mayHold ? 1 : 0; // from after the instant
        else if (seq <= required) lose(seq);
        else corrupt += 1; // a later record without this one: not the source at any instant
      }
      result.records += Math.max(required, highest);
      result.lost += lost;
      result.corrupt += corrupt;
      if (!result.detail && (lost || corrupt))
        result.detail = `region ${this.regions.indexOf(region)}: records 1..${check.prefix} present (${check.outOfOrder.length} more past a gap), ${required} acknowledged before the instant, ${mayHold} issued by it`;
    }
    return result;
  }
}
