// The device-mapper stack of one tracked disk (tracker.ts): its device and file names, and making
// it: era over snapshot-origin over the disk, the era's metadata (its change log) on a loop device
// (era-log.ts).
import fs from 'node:fs';
import path from 'node:path';
import { dmCreate, dmInfo, dmRemove, dmReplace, loopFor } from './dm';
import { trackingDir } from './store';

/** OSR's block size, and the era target's: one changed block is one block to send. */
export const ERA_BLOCK_BYTES = 64 * 1024;

/** Era blocks [begin, end) as the byte extents [offset, length] they cover of a disk of `size` bytes. */
export function blockExtents(blocks: Array<[number, number]>, size: number): Array<[number, number]> {
  return blocks
    .map(([b, e]): [number, number] => [
      b * ERA_BLOCK_BYTES,
      Math.min(e * ERA_BLOCK_BYTES, size) - b * ERA_BLOCK_BYTES,
    ])
    .filter(([, len]) => len > 0);
}

export const top = (disk: string): string => `osr-${disk}`;
export const origin = (disk: string): string => `osr-${disk}-origin`;
export const snapName = (disk: string, n: number): string => `osr-${disk}-p${n}`;
export const cowFile = (disk: string, n: number): string => path.join(trackingDir(), `${disk}-p${n}.cow`);

export function sparseFile(file: string, bytes: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const fd = fs.openSync(file, 'w', 0o600);
  fs.ftruncateSync(fd, bytes);
  fs.closeSync(fd);
}

/** A file of `bytes` zeros, every block of it allocated on the disk now. */
export function allocatedFile(file: string, bytes: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const zeros = Buffer.alloc(1 << 20);
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    for (let at = 0; at < bytes; at += zeros.length)
      fs.writeSync(fd, zeros, 0, Math.min(zeros.length, bytes - at), at);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Makes the stack of `disk` (`sizeBytes` long) over the change log on loop device `log` (era-log.ts). */
export async function makeStack(disk: string, sizeBytes: number, log: string): Promise<void> {
  const device = `/dev/${disk}`;
  const sectors = Math.floor(sizeBytes / 512);
  if (!(await dmInfo(origin(disk)))) await dmCreate(origin(disk), `0 ${sectors} snapshot-origin ${device}`);
  const o = await dmInfo(origin(disk));
  if (!o) throw new Error(`${origin(disk)} vanished as it was made`);
  await dmCreate(top(disk), `0 ${sectors} era ${log} ${o.major}:${o.minor} ${ERA_BLOCK_BYTES / 512}`);
}

/** Snapshot n of `disk` (the disk `device` under the stack), copy-on-write in a loop file it cannot overflow. */
export async function makeSnapshot(
  disk: string,
  n: number,
  device: string,
  sizeBytes: number,
): Promise<void> {
  sparseFile(cowFile(disk, n), sizeBytes + (16 << 20));
  const cow = await loopFor(cowFile(disk, n));
  await dmCreate(snapName(disk, n), `0 ${Math.floor(sizeBytes / 512)} snapshot ${device} ${cow} N 8`);
}

/** Removes the stack of `disk`; a top device still open keeps its name as a plain linear map. */
export async function removeStack(disk: string, device: string, sizeBytes: number): Promise<void> {
  const info = await dmInfo(top(disk));
  if (info && info.openCount > 0)
    await dmReplace(top(disk), `0 ${Math.floor(sizeBytes / 512)} linear ${device} 0`);
  else await dmRemove(top(disk));
  await dmRemove(origin(disk));
}
