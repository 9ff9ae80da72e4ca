// Failback into this machine: the process server's master target writes the recovery-site copy
// onto the machine's own disks through the agent (protocol.ts, TargetRequest), as it writes a
// QEMU machine's disks through NBD. A disk is written only when nothing on the machine uses it:
// not tracked by the agent (protection ended with the committed failover), not mounted, not held,
// and it is then opened with O_EXCL, so that the kernel refuses a mount or another device-mapper
// stack on it for as long as failback writes it. An agent restart loses no write that was
// answered: each `target-flush` is an fsync, and the master target commits a cycle only after it.
import fs from 'node:fs';
import { dmInfo, dmRemove } from './tracking/dm';
import { TrackingError } from './tracking/errors';
import { diskInUse, mountPointsOf } from './tracking/mounts';
import { spanChecksums } from './tracking/checksums';
import { top } from './tracking/stack';
import type { Write } from './connection';
import { ReadSlots } from './read-slots';
import {
  CHECKSUM_SPAN_BYTES,
  DATA_CHUNK_BYTES,
  TARGET_WRITE_BYTES,
  dataPieces,
  encode,
  type TargetOpened,
  type TargetRequest,
} from './protocol';

const ZEROS = Buffer.alloc(1024 * 1024);

export const isTargetRequest = (request: { op: string }): request is TargetRequest =>
  request.op.startsWith('target-');

export interface TargetDeps {
  /** Whether the agent's tracking has the disk (its stack, or a stop standing over it). */
  tracks: (disk: string) => boolean;
  /** Where the disks are (/dev, /sys/block); tests give a folder of files. */
  devDir?: string;
  sysBlock?: string;
  /** Opens a disk for failback; O_EXCL on a block device is the kernel's exclusive claim. */
  openExclusive?: (file: string) => Promise<fs.promises.FileHandle>;
}

export class FailbackTarget {
  private readonly open = new Map<string, { fh: fs.promises.FileHandle; size: number }>();
  private readonly slots = new ReadSlots(2, DATA_CHUNK_BYTES);
  private readonly devDir: string;
  private readonly sysBlock: string;
  private readonly openExclusive: (file: string) => Promise<fs.promises.FileHandle>;

  constructor(private readonly deps: TargetDeps) {
    this.devDir = deps.devDir ?? '/dev';
    this.sysBlock = deps.sysBlock ?? '/sys/block';
    this.openExclusive =
      deps.openExclusive ?? ((file) => fs.promises.open(file, fs.constants.O_RDWR | fs.constants.O_EXCL));
  }

  /** Serves one request; answers with a reply line or a data frame through `write`. */
  async serve(id: number, request: TargetRequest, write: Write): Promise<void> {
    const reply = (result: unknown): Promise<void> => write(encode({ type: 'reply', id, result }));
    switch (request.op) {
      case 'target-open': {
        const disks: TargetOpened['disks'] = [];
        const before = new Set(this.open.keys());
        try {
          for (const disk of request.disks) disks.push({ disk, sizeBytes: (await this.disk(disk)).size });
        } catch (err) {
          // All or none: a disk refused leaves none of the others claimed (the operator may give up).
          for (const { disk } of disks) if (!before.has(disk)) await this.closeDisk(disk);
          throw err;
        }
        return reply({ disks } satisfies TargetOpened);
      }
      case 'target-read': {
        const d = await this.disk(request.disk);
        this.inside(request.disk, d.size, request.offset, request.length, DATA_CHUNK_BYTES);
        return this.slots.with(async (buf) => {
          await readFully(d.fh, buf, request.offset, request.length);
          await write(...dataPieces(id, buf.subarray(0, request.length)));
        });
      }
      case 'target-checksums': {
        const d = await this.disk(request.disk);
        this.inside(request.disk, d.size, request.offset, request.length, CHECKSUM_SPAN_BYTES);
        return this.slots.with(async (buf) => {
          const read = async (offset: number, length: number) => {
            await readFully(d.fh, buf, offset, length);
            return buf.subarray(0, length);
          };
          const sums = await spanChecksums(read, request.offset, request.length, request.blockBytes, {
            spanBytes: CHECKSUM_SPAN_BYTES,
            readBytes: DATA_CHUNK_BYTES,
          });
          await write(...dataPieces(id, sums));
        });
      }
      case 'target-write': {
        const d = await this.disk(request.disk);
        const data = Buffer.from(request.data, 'base64');
        this.inside(request.disk, d.size, request.offset, data.length, TARGET_WRITE_BYTES);
        await writeFully(d.fh, data, request.offset);
        return reply({ written: data.length });
      }
      case 'target-zero': {
        const d = await this.disk(request.disk);
        this.inside(request.disk, d.size, request.offset, request.length, Number.MAX_SAFE_INTEGER);
        for (let done = 0; done < request.length; done += ZEROS.length)
          await writeFully(
            d.fh,
            ZEROS.subarray(0, Math.min(ZEROS.length, request.length - done)),
            request.offset + done,
          );
        return reply({ zeroed: request.length });
      }
      case 'target-flush':
        await (await this.disk(request.disk)).fh.sync();
        return reply({});
      case 'target-close':
        return reply({ closed: await this.close() });
      default:
        throw new TrackingError('Error', `unknown request ${String((request as { op?: unknown }).op)}`);
    }
  }

  /** Closes every disk opened for failback (the agent stops, or failback is over). */
  async close(): Promise<number> {
    const all = [...this.open.values()];
    this.open.clear();
    for (const d of all) await d.fh.close().catch(() => undefined);
    return all.length;
  }

  private async closeDisk(disk: string): Promise<void> {
    const d = this.open.get(disk);
    this.open.delete(disk);
    await d?.fh.close().catch(() => undefined);
  }

  /** The disk, opened exclusively once its checks pass (again after an agent restart). */
  private async disk(disk: string): Promise<{ fh: fs.promises.FileHandle; size: number }> {
    const known = this.open.get(disk);
    if (known) return known;
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(disk) || !fs.existsSync(`${this.sysBlock}/${disk}`))
      throw new TrackingError('Error', `this machine has no disk ${JSON.stringify(disk)}`);
    if (this.deps.tracks(disk))
      throw new TrackingError(
        'DiskInUseError',
        `${disk} is still tracked by the agent (its protection has not ended, or its writes are still stopped by the failover): resume them (\`osr agent resume\`), then stop what writes ${disk} and unmount it`,
      );
    await this.dropIdleTop(disk);
    const use = diskInUse(disk);
    if (use)
      throw new TrackingError(
        'DiskInUseError',
        `${disk} is ${use}: failback overwrites it, so stop what uses it (unmount it) and try again`,
      );
    let fh: fs.promises.FileHandle;
    try {
      fh = await this.openExclusive(`${this.devDir}/${disk}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
      throw new TrackingError(
        'DiskInUseError',
        `${disk} is open exclusively by something else (a mount, a device-mapper or RAID stack): stop it and try again`,
      );
    }
    const size = Number(fs.readFileSync(`${this.sysBlock}/${disk}/size`, 'utf8').trim()) * 512;
    const opened = { fh, size };
    // Two requests for one disk may have opened it at once: keep the first, close the other.
    const raced = this.open.get(disk);
    if (raced) {
      await fh.close();
      return raced;
    }
    this.open.set(disk, opened);
    return opened;
  }

  /**
   * Ended tracking leaves osr-<disk> as a plain linear map while something had it open (stack.ts,
   * removeStack). Once nothing does, it is only in the way: removed. Still open or mounted: refused.
   */
  private async dropIdleTop(disk: string): Promise<void> {
    const info = await dmInfo(top(disk)).catch(() => undefined);
    if (!info) return;
    const mounted = mountPointsOf(top(disk), info.minor);
    if (info.openCount > 0 || mounted.length)
      throw new TrackingError(
        'DiskInUseError',
        `${disk} is in use through /dev/mapper/${top(disk)}${mounted.length ? ` (mounted at ${mounted.join(', ')})` : ''}: failback overwrites it, so stop what uses it (unmount it) and try again`,
      );
    await dmRemove(top(disk));
  }

  private inside(disk: string, size: number, offset: number, length: number, most: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0)
      throw new TrackingError('Error', `${disk}: ${offset}+${length} is not a byte range`);
    if (offset + length > size)
      throw new TrackingError('Error', `${disk}: ${offset}+${length} is outside its ${size} bytes`);
    if (length > most)
      throw new TrackingError('Error', `${disk}: at most ${most} bytes at once, not ${length}`);
  }
}

async function readFully(fh: fs.promises.FileHandle, buf: Buffer, offset: number, length: number) {
  for (let done = 0; done < length; ) {
    const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
    if (bytesRead === 0) throw new TrackingError('Error', `the disk ended at ${offset + done}`);
    done += bytesRead;
  }
}

async function writeFully(fh: fs.promises.FileHandle, data: Buffer, offset: number) {
  for (let done = 0; done < data.length; ) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
    done += bytesWritten;
  }
}

/** The requests' entry: each runs at once (the master target bounds how many it sends), failures answered. */
export function targetHandler(
  target: FailbackTarget,
): (id: number, request: TargetRequest, write: Write) => void {
  return (id, request, write) => {
    void target.serve(id, request, write).catch((err: Error) =>
      write(
        encode({
          type: 'reply',
          id,
          error: { name: err instanceof TrackingError ? err.name : 'Error', message: err.message },
        }),
      ).catch(() => undefined),
    );
  };
}
