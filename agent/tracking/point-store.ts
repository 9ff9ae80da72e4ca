// The room a point needs under the tracking folder (tracker.ts): its copy-on-write store is a
// sparse file that grows by the old data of every block the machine rewrites while the point is
// read. When the filesystem holding it is full, dm-snapshot invalidates the snapshot (its reads
// fail with EIO) and lets the machine's writes go on. The point is lost, never a change: it is
// released unshipped, and the next point's era list starts where the last shipped one's did.
import fs from 'node:fs';
import { detachLoop, run } from './dm';
import { TrackingError } from './errors';
import { trackingDir } from './store';
import { allocatedBytes, storeSpace } from './store-space';

/** What `df` shows available on the filesystem holding the tracking folder. */
function availableBytes(): number {
  const s = fs.statfsSync(trackingDir());
  return s.bavail * s.bsize;
}

function storeFull(what: string): TrackingError {
  const dir = trackingDir();
  const err = new TrackingError(
    'PointOverflowError',
    `${what}: the filesystem holding ${dir} is full (${(availableBytes() / (1 << 20)).toFixed(1)} MiB available), ` +
      "so the point's copy-on-write store cannot grow; the machine's writes go on. Nothing is lost: the point " +
      `is dropped and its changes go with the next one. Fix: free space on the filesystem holding ${dir}, or ` +
      'grow it: a point needs room for the old data of every block the machine rewrites while it is read',
  );
  // Reported with the heartbeats (agent-store-full) until a later point is kept.
  storeSpace.noteOverflow(err.message);
  return err;
}

/** Detaches and removes a point's copy-on-write file, noting the room it took (the next need as much). */
export async function dropCowFile(file: string): Promise<void> {
  await detachLoop(file);
  storeSpace.notePointUse(allocatedBytes(file));
  fs.rmSync(file, { force: true });
}

/** An error of a tracking request as the error to send: a full filesystem says so, with the fix. */
export function whenFull(err: unknown, what: string): unknown {
  return (err as NodeJS.ErrnoException).code === 'ENOSPC' ? storeFull(what) : err;
}

/**
 * A failed read of `snapshot` as the error to send: the point's store overflowed (dm-snapshot
 * says Invalid, or Overflow for a full persistent store), or `err` itself.
 */
export async function readFailure(err: unknown, snapshot: string, what: string): Promise<unknown> {
  const status = await run('dmsetup', ['status', snapshot]).catch(() => '');
  return /\b(Invalid|Overflow)\b/.test(status)
    ? storeFull(`${what} was invalidated (${status.trim()})`)
    : err;
}
