// Where each tracked disk's change log (its era target's metadata, on a loop device) lives: in RAM
// while the agent runs, on the machine's disk from a clean stop until the next start.
// Why RAM: dm-era commits its metadata before the first write to a block in each era completes,
// and on the machine's disk that commit is a flush. With the log on the system disk a 64 KiB
// O_DSYNC write took 2.8-3.2x the raw disk's time, in RAM 1.5-1.7x (`npm run bench --
// --agent-stack`).
// Nothing is lost by it: a log that lived through a crash is not trusted anyway (writes may reach
// the disk before the agent rebuilds the stack: a resync by checksums follows), and a clean stop
// moves the live log onto the disk, where the era commits the writes that come until the machine
// is off as it always did; the next start in the same boot moves it back, a stack rebuilt after
// a reboot starts from a copy of it.
import fs from 'node:fs';
import path from 'node:path';
import { detachLoop, dmInfo, dmResume, dmSuspend, eraTable, loopFor, run } from './dm';
import { fsyncPath } from './durable';
import { allocatedFile, top } from './stack';
import { trackingDir } from './store';

/** RAM of the agent's own: a tmpfs mounted here (/run's own is capped at a tenth of the RAM). */
export const ramDir = (): string => process.env.OSR_AGENT_RAM_DIR ?? '/run/osr-agent';
export const ramLogFile = (disk: string): string => path.join(ramDir(), `${disk}.era`);
/** The log a clean stop left on the disk. */
export const diskLogFile = (disk: string): string => path.join(trackingDir(), `${disk}.era`);

/** Room for the era metadata: a 32-bit era per block and a few bitsets, plus room. */
export const logBytes = (sizeBytes: number, blockBytes: number): number =>
  Math.max(8 << 20, Math.ceil(sizeBytes / blockBytes) * 8 + (4 << 20));

async function ensureRamDir(): Promise<void> {
  const dir = ramDir();
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const mounted = fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[1] === dir);
  if (!mounted) await run('mount', ['-t', 'tmpfs', '-o', 'mode=0700', 'osr-agent-log', dir]);
}

/**
 * A new, empty log in RAM for `disk`; its loop device. Written out, not sparse: a log that found
 * no room later would fail the machine's writes with it (here it fails the protection, now). Its
 * place on the disk is written out too, so that a clean stop never needs room the disk lacks.
 */
export async function newLog(disk: string, sizeBytes: number, blockBytes: number): Promise<string> {
  await ensureRamDir();
  await dropLog(disk);
  const bytes = logBytes(sizeBytes, blockBytes);
  const mib = Math.ceil(bytes / 2 ** 20);
  try {
    allocatedFile(ramLogFile(disk), bytes);
  } catch (err) {
    await dropLog(disk);
    throw new Error(
      `no room in RAM for the change log of ${disk} (${mib} MiB, 1/8192 of the disk): ${(err as Error).message}; free memory on this machine or protect fewer disks`,
    );
  }
  try {
    allocatedFile(diskLogFile(disk), bytes);
  } catch (err) {
    await dropLog(disk);
    throw new Error(
      `no room in ${trackingDir()} for the change log of ${disk} (${mib} MiB, kept there across a clean stop): ${(err as Error).message}; free space there`,
    );
  }
  return loopFor(ramLogFile(disk));
}

/** The log a clean stop left on the disk, copied into RAM for a stack rebuilt over it; its loop device. */
export async function keptLog(disk: string): Promise<string> {
  await ensureRamDir();
  await detachLoop(ramLogFile(disk));
  fs.copyFileSync(diskLogFile(disk), ramLogFile(disk));
  return loopFor(ramLogFile(disk));
}

/** Removes both copies of the log of `disk` (its stack is gone). */
export async function dropLog(disk: string): Promise<void> {
  for (const file of [ramLogFile(disk), diskLogFile(disk)]) {
    await detachLoop(file);
    fs.rmSync(file, { force: true });
  }
}

/**
 * Moves the live log of `disk` to the disk or to RAM: the era is suspended (its metadata commits),
 * the log copied, the table loaded over the copy and resumed (the resume swaps it in). A disk
 * suspended already (writes stopped) is not resumed: its new table waits for the resume that
 * lets its writes go. Killed half way, the agent's next start resumes the disk on the old log or
 * the new one, both whole.
 */
export async function moveLog(disk: string, to: 'disk' | 'ram'): Promise<void> {
  const device = top(disk);
  const table = await eraTable(device);
  const target = to === 'disk' ? diskLogFile(disk) : ramLogFile(disk);
  if (table.metadataFile === target) return;
  if (to === 'ram') await ensureRamDir();
  const wasSuspended = (await dmInfo(device))?.suspended === true;
  if (!wasSuspended) await dmSuspend(device);
  try {
    await copyLog(table.metadataFile, target);
    const loop = await loopFor(target);
    await run('dmsetup', [
      'load',
      device,
      '--table',
      `0 ${table.sectors} era ${loop} ${table.origin} ${table.blockSectors}`,
    ]);
  } finally {
    if (!wasSuspended) await dmResume(device);
  }
  if (wasSuspended) return; // the old log stays in use until the resume
  await detachLoop(table.metadataFile).catch(() => undefined);
  // The disk's copy stays as the room the next clean stop writes into; RAM is given back.
  if (table.metadataFile === ramLogFile(disk)) fs.rmSync(table.metadataFile, { force: true });
}

/** Moves the live logs of `disks` back to RAM (a start after a clean stop); what failed, in words. */
export async function logsToRam(disks: string[]): Promise<string[]> {
  const problems: string[] = [];
  for (const d of disks)
    if (await dmInfo(top(d)).catch(() => undefined))
      await moveLog(d, 'ram').catch((err: Error) =>
        problems.push(`${d}: its change log stays on the disk (writes slower): ${err.message}`),
      );
  return problems;
}

/** A clean stop: every live log onto the disk; a stopped disk's (suspended, it stays so) copied there. */
export async function logsToDisk(disks: string[], stopped: string[]): Promise<void> {
  for (const d of disks)
    if (await dmInfo(top(d))) await (stopped.includes(d) ? saveLog(d) : moveLog(d, 'disk'));
}

/** Copies the log of suspended `disk` onto the disk, durably, leaving the live one in use. */
export async function saveLog(disk: string): Promise<void> {
  const { metadataFile } = await eraTable(top(disk));
  if (metadataFile !== diskLogFile(disk)) await copyLog(metadataFile, diskLogFile(disk));
}

/**
 * A whole copy of a log (read through the page cache the buffered loop writes to), flushed: over
 * the file already there when it is as large (its room taken when tracking started; a copy cut
 * short is never trusted, the clean-stop mark comes after it), else a new file renamed in.
 */
export async function copyLog(from: string, to: string): Promise<void> {
  await detachLoop(to);
  const size = fs.statSync(from).size;
  if (fs.existsSync(to) && fs.statSync(to).size === size) return overwrite(from, to, size);
  const temp = `${to}.new`;
  fs.copyFileSync(from, temp);
  fsyncPath(temp);
  fs.renameSync(temp, to);
  fsyncPath(path.dirname(to));
}

function overwrite(from: string, to: string, size: number): void {
  const src = fs.openSync(from, 'r');
  const dst = fs.openSync(to, 'r+');
  try {
    const chunk = Buffer.alloc(1 << 20);
    for (let at = 0; at < size; ) {
      const n = fs.readSync(src, chunk, 0, Math.min(chunk.length, size - at), at);
      if (n <= 0) throw new Error(`${from} ended at ${at} of ${size} bytes`);
      fs.writeSync(dst, chunk, 0, n, at);
      at += n;
    }
    fs.fsyncSync(dst);
  } finally {
    fs.closeSync(src);
    fs.closeSync(dst);
  }
}
