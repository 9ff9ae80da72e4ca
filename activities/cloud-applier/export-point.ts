// Exports one disk of a recovery point (its replica's blob snapshot) to a raw image file: the file
// is made the disk's size, sparse, and only the snapshot's pages are downloaded and written; pages
// that read as zeros are skipped too, so holes stay holes. Used by `osr export` to restore and to
// verify points against their source.
import { accessSync, constants, promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import type { RecoveryPoint } from '../../shared/replication-types';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { ApplierDeps } from './replica-disk';
import { forEachLimited, isNotFound, listPages, replicaBlobClient } from './replica-disk';

const CHUNK_BYTES = 4 * 1024 * 1024;
/** Zero runs of at least this size, aligned, are left as holes in the file. */
const HOLE_BYTES = 64 * 1024;
const ZEROS = Buffer.alloc(HOLE_BYTES);

export interface ExportPointInput {
  point: RecoveryPoint;
  diskId: string;
  /** A regular file; created, or truncated and rewritten. Removed again if the export fails. */
  outFile: string;
  /** Bytes of the snapshot's pages processed so far, of all of them. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Downloads at once; default 4. */
  concurrency?: number;
}

/**
 * Writes the image and returns the bytes of data written to the file (the file itself is the
 * disk's full size, `point.disks[…].sizeBytes`, the rest being holes that read as zeros).
 */
export async function exportPoint(
  deps: Pick<ApplierDeps, 'blobService'>,
  input: ExportPointInput,
): Promise<number> {
  const { point, diskId } = input;
  const disk = point.disks.find((d) => d.diskId === diskId);
  if (!disk) {
    throw new Error(
      `point ${point.id} of ${point.machine} has no disk ${diskId}; its disks are ${point.disks.map((d) => d.diskId).join(', ')}`,
    );
  }
  const snapshot = replicaBlobClient(deps.blobService, disk.blob).withSnapshot(disk.snapshot);
  let snapshotBytes: number;
  try {
    snapshotBytes = (await snapshot.getProperties()).contentLength ?? 0;
  } catch (err) {
    if (isNotFound(err)) {
      throw new Error(
        `the image of disk ${diskId} of point ${point.id} (${CONTAINERS.replica}/${disk.blob} snapshot ${disk.snapshot}) ` +
          'no longer exists: the point was pruned by retention or the replica deleted; choose another point',
      );
    }
    throw err;
  }
  const size = disk.sizeBytes;
  if (snapshotBytes < size) {
    throw new Error(
      `snapshot ${disk.snapshot} of ${disk.blob} has ${snapshotBytes} bytes, the point says the disk has ${size}`,
    );
  }

  const problem = exportTargetProblem(input.outFile, true);
  if (problem) throw new Error(problem);
  const pages = await listPages(snapshot, size);
  const chunks: { offset: number; length: number }[] = [];
  for (const range of pages) {
    const end = Math.min(size, range.offset + range.length);
    for (let at = range.offset; at < end; at += CHUNK_BYTES)
      chunks.push({ offset: at, length: Math.min(CHUNK_BYTES, end - at) });
  }
  const totalBytes = chunks.reduce((n, c) => n + c.length, 0);

  const file = await fs.open(input.outFile, 'w');
  let written = 0;
  let done = 0;
  try {
    await file.truncate(size);
    await forEachLimited(chunks, input.concurrency ?? 4, async (chunk) => {
      const data = await snapshot.downloadToBuffer(chunk.offset, chunk.length);
      if (data.length !== chunk.length)
        throw new Error(`read ${data.length} of ${chunk.length} bytes at ${chunk.offset}`);
      // Not `written += await …`: that reads `written` before the await and loses the other
      // chunks' additions made meanwhile.
      const wrote = await writeSkippingZeros(file, data, chunk.offset);
      written += wrote;
      done += chunk.length;
      input.onProgress?.(done, totalBytes);
    });
    await file.sync();
  } catch (err) {
    await file.close().catch(() => undefined);
    await fs.unlink(input.outFile).catch(() => undefined);
    throw err;
  }
  await file.close();
  return written;
}

// Writes the non-zero runs of data (at HOLE_BYTES granularity, aligned to the disk) at `position`.
async function writeSkippingZeros(file: fs.FileHandle, data: Buffer, position: number): Promise<number> {
  let written = 0;
  let runStart = -1;
  const flush = async (end: number): Promise<void> => {
    if (runStart < 0) return;
    const length = end - runStart;
    let at = 0;
    while (at < length) {
      const { bytesWritten } = await file.write(data, runStart + at, length - at, position + runStart + at);
      at += bytesWritten;
    }
    written += length;
    runStart = -1;
  };
  for (let at = 0; at < data.length; ) {
    const blockEnd = Math.min(
      data.length,
      (Math.floor((position + at) / HOLE_BYTES) + 1) * HOLE_BYTES - position,
    );
    const piece = data.subarray(at, blockEnd);
    const zero = piece.equals(ZEROS.subarray(0, piece.length));
    if (zero) await flush(at);
    else if (runStart < 0) runStart = at;
    at = blockEnd;
  }
  await flush(data.length);
  return written;
}

/**
 * Why `file` cannot take an export, or undefined: its folder is missing or not writable, it is not
 * a regular file, or it exists and may not be overwritten. The CLI asks before fetching anything;
 * exportPoint asks again (overwriting) for every other caller.
 */
export function exportTargetProblem(file: string, overwrite: boolean): string | undefined {
  const dir = path.dirname(file);
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory())
    return `cannot write ${file}: the folder ${dir} does not exist; create it or choose another --out`;
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    return `cannot write ${file}: the folder ${dir} is not writable; choose another --out`;
  }
  const existing = statSync(file, { throwIfNoEntry: false });
  if (existing && !existing.isFile())
    return `${file} is not a regular file; export writes an image file (write a raw one to a device with dd)`;
  if (existing && !overwrite) return `${file} exists; pass --force to overwrite it, or choose another --out`;
  return undefined;
}
