// The master target's apply: one reverse cycle of one disk, from osr-cache onto an ORIGINAL disk
// (through its writable NBD export, or through the agent of the machine it is in: target-disks.ts). Verification is the cloud applier's own code (applyCycle with
// another target): a segment that fails any check is never written.
//
// Its own points: before a verified segment's first write, what the segment is about to overwrite
// is read from the disk and stored, encoded and encrypted by the same block pipeline, as an undo
// segment (`<machine>.undo/<disk>/<cycle>/<index>.seg`, created only if absent: a retried attempt
// never journals bytes an earlier attempt already overwrote). When the cycle is written and flushed
// on EVERY disk of the machine, commitReversePoint records `<machine>.undo/point.json` (the disks
// are now that cycle's point in time, together) and deletes the journals. Any journaled cycle newer
// than the point is rolled back (rollbackIncomplete), newest segment first, so failback never
// brings up a half-applied cycle, nor disks of different cycles.
// Nothing lives on the worker: any master target of the site can resume, finish or roll back.
import { RestError } from '@azure/storage-blob';
import type { ApplySummary } from '../../shared/replication-types';
import { CONTAINERS, type BlobStorage } from '../../lib/azure/blob-client';
import { reverseId, undoId, type FailbackTargetDisk } from '../../shared/failback-types';
import { applyCycle, type ApplyTarget } from '../common/apply-cycle';
import type { BlockPipeline } from '../../lib/segments/block-pipeline';
import { segmentBlobName, segmentCyclePrefix } from '../../lib/segments/cache-layout';
import type { SegmentExtent } from '../../lib/segments/segment-header';
import { readExtents } from '../../lib/disk/extents';
import { openTargetDisk } from './target-disks';

export interface MasterTargetDeps {
  blobService: BlobStorage;
  pipeline: BlockPipeline;
}

export interface ApplyReverseInput {
  /** The failed-back machine (its original name). */
  machine: string;
  disk: FailbackTargetDisk;
  cycle: number;
  startIndex?: number;
  onProgress?: (nextIndex: number) => void;
  signal?: AbortSignal;
}

export interface MasterTargetPoint {
  cycle: number;
  at: string;
}

function pointBlobName(machine: string): string {
  return `${undoId(machine)}/point.json`;
}

/** The master target's last point of a machine: the newest cycle applied in full on all its disks. */
export async function readMasterTargetPoint(
  blobService: BlobStorage,
  machine: string,
): Promise<MasterTargetPoint | undefined> {
  try {
    const buf = await blobService
      .getContainerClient(CONTAINERS.cache)
      .getBlockBlobClient(pointBlobName(machine))
      .downloadToBuffer();
    return JSON.parse(buf.toString('utf8')) as MasterTargetPoint;
  } catch (err) {
    if (err instanceof RestError && err.statusCode === 404) return undefined;
    throw err;
  }
}

export async function applyReverseCycle(
  deps: MasterTargetDeps,
  input: ApplyReverseInput,
): Promise<ApplySummary> {
  const { machine, disk, cycle } = input;
  const cache = deps.blobService.getContainerClient(CONTAINERS.cache);
  const device = await openTargetDisk(disk);
  try {
    const journal = async (extents: readonly SegmentExtent[], index: number): Promise<void> => {
      if (extents.length === 0) return;
      const blob = cache.getBlockBlobClient(segmentBlobName(undoId(machine), disk.diskId, cycle, index));
      // Journaled by an earlier attempt, whose writes may have begun: that journal is the truth.
      if (await blob.exists()) return;
      const plain = extents.map((e) => ({ offset: e.offset, length: e.length }));
      const old = await readExtents(device, plain);
      const encoded = await deps.pipeline.encode({
        machine: undoId(machine),
        diskId: disk.diskId,
        cycle,
        index,
        extents: plain,
        data: old,
      });
      try {
        await blob.uploadData(encoded.segment, { conditions: { ifNoneMatch: '*' } });
      } catch (err) {
        if (!(err instanceof RestError && (err.statusCode === 409 || err.statusCode === 412))) throw err;
      }
    };
    const target: ApplyTarget = {
      sizeBytes: device.size,
      beforeWrite: (decoded, index) => journal(decoded.header.extents, index),
      write: (offset, body) => device.write(offset, body),
      clear: (offset, length) => device.zero(offset, length),
      flush: () => device.flush(),
    };
    // A resumed attempt skips the segments below its heartbeated index only while their journal
    // is there: a journal rolled back in between means the disk is before the cycle again.
    let startIndex = input.startIndex ?? 0;
    if (startIndex > 0) {
      const journaled = cache.listBlobsFlat({
        prefix: segmentCyclePrefix(undoId(machine), disk.diskId, cycle),
      });
      if ((await journaled.next()).done) startIndex = 0;
    }
    const summary = await applyCycle(deps, {
      machine: reverseId(machine),
      diskId: disk.diskId,
      cycle,
      startIndex,
      onProgress: input.onProgress,
      signal: input.signal,
      target,
    });
    // The journal stays until every disk of the machine has the cycle (commitReversePoint).
    return summary;
  } finally {
    await device.close();
  }
}

/**
 * Every disk of the machine has the cycle: it is the master target's point now, and the journals
 * of it and of older cycles are no longer needed.
 */
export async function commitReversePoint(
  deps: Pick<MasterTargetDeps, 'blobService'>,
  input: { machine: string; diskIds: string[]; cycle: number },
): Promise<MasterTargetPoint> {
  const point: MasterTargetPoint = { cycle: input.cycle, at: new Date().toISOString() };
  const body = JSON.stringify(point);
  const cache = deps.blobService.getContainerClient(CONTAINERS.cache);
  await cache.getBlockBlobClient(pointBlobName(input.machine)).upload(body, Buffer.byteLength(body));
  for (const diskId of input.diskIds) {
    for await (const item of cache.listBlobsFlat({ prefix: `${undoId(input.machine)}/${diskId}/` })) {
      const m = /\/(\d+)\/\d+\.seg$/.exec(item.name);
      if (m && Number(m[1]) <= input.cycle) await cache.deleteBlob(item.name).catch(() => undefined);
    }
  }
  return point;
}

async function deleteJournal(
  blobService: BlobStorage,
  machine: string,
  diskId: string,
  cycle: number,
): Promise<void> {
  const cache = blobService.getContainerClient(CONTAINERS.cache);
  for await (const item of cache.listBlobsFlat({
    prefix: segmentCyclePrefix(undoId(machine), diskId, cycle),
  }))
    await cache.deleteBlob(item.name).catch(() => undefined);
}

/**
 * Brings a disk back to the master target's last point: any cycle journaled but not recorded as
 * applied is undone, newest segment first. Returns the cycles rolled back (usually none).
 */
export async function rollbackIncomplete(
  deps: MasterTargetDeps,
  input: { machine: string; disk: FailbackTargetDisk },
): Promise<{ rolledBack: number[]; point?: MasterTargetPoint }> {
  const { machine, disk } = input;
  const cache = deps.blobService.getContainerClient(CONTAINERS.cache);
  const point = await readMasterTargetPoint(deps.blobService, machine);
  const journals = new Map<number, string[]>();
  for await (const item of cache.listBlobsFlat({ prefix: `${undoId(machine)}/${disk.diskId}/` })) {
    const m = /\/(\d+)\/(\d+)\.seg$/.exec(item.name);
    if (!m) continue;
    const cycle = Number(m[1]);
    journals.set(cycle, [...(journals.get(cycle) ?? []), item.name]);
  }
  const rolledBack: number[] = [];
  const cycles = [...journals.keys()].sort((a, b) => b - a);
  if (cycles.length === 0) return { rolledBack, point };
  const device = await openTargetDisk(disk);
  try {
    for (const cycle of cycles) {
      if (point && point.cycle >= cycle) {
        await deleteJournal(deps.blobService, machine, disk.diskId, cycle); // applied: stale journal
        continue;
      }
      const names = (journals.get(cycle) ?? []).sort().reverse();
      for (const name of names) {
        const decoded = await deps.pipeline.decode(await cache.getBlockBlobClient(name).downloadToBuffer());
        let at = 0;
        for (const e of decoded.header.extents) {
          if (e.kind === 'zero') await device.zero(e.offset, e.length);
          else {
            await device.write(e.offset, decoded.data.subarray(at, at + e.length));
            at += e.length;
          }
        }
      }
      await device.flush();
      await deleteJournal(deps.blobService, machine, disk.diskId, cycle);
      rolledBack.push(cycle);
    }
  } finally {
    await device.close();
  }
  return { rolledBack, point };
}

/** Removes the master target's points and journals of a machine (reprotect over). */
export async function deleteMasterTargetState(blobService: BlobStorage, machine: string): Promise<void> {
  const cache = blobService.getContainerClient(CONTAINERS.cache);
  for (const prefix of [`${undoId(machine)}/`, `${reverseId(machine)}/`]) {
    for await (const item of cache.listBlobsFlat({ prefix }))
      await cache.deleteBlob(item.name).catch(() => undefined);
  }
}
