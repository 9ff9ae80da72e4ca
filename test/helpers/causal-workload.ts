// The causal workload of the consistency-group tests (design invariant 2), for QEMU machines and
// libvirt domains alike: machine B writes its record n only after machine A acknowledged its
// record n, so a group point is a consistent cut exactly when B's newest record is A's or one
// behind. Record numbers keep growing across runs: the newest record on a disk is the newest written.
import assert from 'node:assert/strict';
import type { ControlContext } from '../../operations/context';
import * as groups from '../../operations/groups';
import type { GroupStatus } from '../../shared/contracts/consistency-group';
import type { GroupPoint } from '../../shared/group-types';
import { pollFor } from './poll';
import { exportedImage, pointById } from './protection';
import { highestRecord } from './test-vm';

/** A guest that writes numbered records to its disk (TestVm, LibvirtTestVm). */
interface RecordWriter {
  writeRecord(disk: number, record: number): Promise<void>;
}

export interface CausalMember {
  machine: string;
  vm: RecordWriter;
}

export class CausalWorkload {
  /** The newest record B acknowledged. */
  ackedB = 0;
  private recordsWritten = 0;
  private waiters: Array<{ record: number; resolve: () => void }> = [];

  constructor(
    private readonly ctx: ControlContext,
    private readonly a: CausalMember,
    private readonly b: CausalMember,
    private readonly options: { cuts: number; warmupRecords: number; diskId?: string },
  ) {}

  /** Resolves once B acknowledged `record` (a gate holds a freeze on it for the negative controls). */
  bAcknowledged(record: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.ackedB >= record) resolve();
      else this.waiters.push({ record, resolve });
    });
  }

  /** Runs the workload while `cuts` group points are taken; the points, this run's first record and the last written. */
  async cutsUnderLoad(group: string): Promise<{ points: GroupPoint[]; first: number; written: number }> {
    let n = this.recordsWritten;
    const first = n + 1;
    let running = true;
    const workload = (async () => {
      while (running) {
        n += 1;
        await this.a.vm.writeRecord(0, n);
        await this.b.vm.writeRecord(0, n); // only once A acknowledged record n
        this.ackedB = n;
        this.waiters = this.waiters.filter((w) => (w.record <= n ? void w.resolve() : true));
      }
    })();
    try {
      // The cuts start once the workload is under way.
      await Promise.race([this.bAcknowledged(first + this.options.warmupRecords), workload]);
      const points: GroupPoint[] = [];
      for (let i = 0; i < this.options.cuts; i++) points.push(await groups.takeGroupPoint(this.ctx, group));
      return { points, first, written: n };
    } finally {
      running = false;
      await workload;
      this.recordsWritten = n;
    }
  }

  /** The newest record of each member in a group point, read back from storage. */
  async newestRecords(point: GroupPoint): Promise<{ a: number; b: number }> {
    const newest = async (machine: string) => {
      const member = point.members.find((m) => m.machine === machine);
      assert.ok(member, `${machine} is in group point ${point.id}`);
      const recovery = await pointById(this.ctx, machine, member.pointId);
      return (await highestRecord(await exportedImage(this.ctx, recovery, this.options.diskId))) ?? 0;
    };
    return { a: await newest(this.a.machine), b: await newest(this.b.machine) };
  }
}

/** A new group cuts its first point at once: its status when that cut is done. */
export function firstCutDone(ctx: ControlContext, group: string): Promise<GroupStatus> {
  return pollFor(
    async () => {
      const status = await groups.groupStatus(ctx, group);
      const done = status.stats.cuts + status.stats.failed + status.stats.skipped > 0 && !status.phase;
      return done ? status : undefined;
    },
    {
      timeoutMs: 180_000,
      intervalMs: 200,
      failure: (e) => new Error(`group ${group} cut no point: ${String(e)}`),
    },
  );
}
