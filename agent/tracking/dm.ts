// The agent's hands on the kernel's block layer: dmsetup, losetup (util-linux: busybox's lacks
// --show), era_invalidate (thin-provisioning-tools), blockdev and fsfreeze, run as programs. Every
// call names its device; nothing here remembers anything (tracker.ts does, in its state file).
import { execFile } from 'node:child_process';
import fs from 'node:fs';

// sbin first: a shell's PATH on the machine may lack it, and busybox's applets lack options we use.
const PATH = `/usr/sbin:/sbin:/usr/bin:/bin:${process.env.PATH ?? ''}`;

/** Runs a program; rejects with its stderr, naming the command, when it fails. */
export function run(file: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env: { ...process.env, PATH }, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err)
          reject(
            new Error(
              `${file} ${args.join(' ')} failed: ${(stderr || err.message).trim().split('\n').slice(-3).join('; ')}`,
            ),
          );
        else resolve(stdout);
      },
    );
  });
}

export interface DmDevice {
  major: number;
  minor: number;
  openCount: number;
  suspended: boolean;
}

/** A device-mapper device by name, or undefined when there is none. */
export async function dmInfo(name: string): Promise<DmDevice | undefined> {
  const out = await run('dmsetup', [
    'info',
    '-c',
    '--noheadings',
    '--separator',
    ':',
    '-o',
    'major,minor,open,attr',
    name,
  ]).catch((err: Error) => {
    if (/not exist|No such device/i.test(err.message)) return undefined;
    throw err;
  });
  if (!out?.trim()) return undefined;
  const [major, minor, open, attr] = out.trim().split(':');
  return {
    major: Number(major),
    minor: Number(minor),
    openCount: Number(open),
    suspended: !!attr?.includes('s'),
  };
}

/** Creates (load + resume) a device and its /dev/mapper node (udev does it where it runs). */
export async function dmCreate(name: string, table: string): Promise<void> {
  await run('dmsetup', ['create', name, '--table', table]);
  await run('dmsetup', ['mknodes', name]);
}

/**
 * Suspends a device (in-flight writes drain). It also freezes a filesystem mounted on it, unless
 * `noLockfs`: one frozen by fsfreeze already would make that freeze fail with EBUSY.
 */
export const dmSuspend = (name: string, noLockfs = false): Promise<string> =>
  run('dmsetup', ['suspend', ...(noLockfs ? ['--nolockfs'] : []), name]);
export const dmResume = (name: string): Promise<string> => run('dmsetup', ['resume', name]);
export const dmMessage = (name: string, message: string): Promise<string> =>
  run('dmsetup', ['message', name, '0', message]);

/** Replaces a live device's table (suspend, load, resume: in-flight writes drain, none fail). */
export async function dmReplace(name: string, table: string): Promise<void> {
  await run('dmsetup', ['load', name, '--table', table]);
  await dmSuspend(name);
  await dmResume(name);
}

export async function dmRemove(name: string): Promise<void> {
  if (await dmInfo(name)) await run('dmsetup', ['remove', '--retry', name]);
}

/** The live table of era device `name`: its length, metadata (device and file), origin and block size. */
export interface EraTable {
  sectors: number;
  /** The metadata's loop device (/dev/loopN) and the file behind it. */
  metadataDevice: string;
  metadataFile: string;
  /** The device under the era, as major:minor. */
  origin: string;
  blockSectors: number;
}

export async function eraTable(name: string): Promise<EraTable> {
  const table = (await run('dmsetup', ['table', name])).trim();
  const [, sectors, type, meta, origin, block] = table.split(/\s+/);
  if (type !== 'era' || !meta || !origin || !block)
    throw new Error(`${name} is not an era device (table: ${table})`);
  const sys = `/sys/dev/block/${meta}`;
  const devName = /^DEVNAME=(.+)$/m.exec(fs.readFileSync(`${sys}/uevent`, 'utf8'))?.[1];
  const metadataFile = fs.readFileSync(`${sys}/loop/backing_file`, 'utf8').trim();
  if (!devName) throw new Error(`${name}: no device name for its metadata ${meta}`);
  return {
    sectors: Number(sectors),
    metadataDevice: `/dev/${devName}`,
    metadataFile,
    origin,
    blockSectors: Number(block),
  };
}

/** The era target's current era (status: 0 <len> era <metadata block size> <used>/<total> <era> <held root>). */
export async function eraCurrent(name: string): Promise<number> {
  const status = await run('dmsetup', ['status', name]);
  const f = status.trim().split(/\s+/);
  const era = Number(f[2] === 'era' ? f[5] : NaN);
  if (!Number.isInteger(era)) throw new Error(`${name} is not an era device (status: ${status.trim()})`);
  return era;
}

/**
 * The era blocks written in era `since` or later: era_invalidate on a metadata snapshot (the
 * live metadata cannot be read while the target writes it), dropped afterwards.
 */
export async function eraWrittenSince(
  name: string,
  metadataDevice: string,
  since: number,
): Promise<Array<[number, number]>> {
  // A snapshot left by an agent killed mid-call would make the next take fail.
  await dmMessage(name, 'drop_metadata_snap').catch(() => undefined);
  await dmMessage(name, 'take_metadata_snap');
  try {
    const xml = await run('era_invalidate', [
      '--metadata-snapshot',
      '--written-since',
      String(since),
      metadataDevice,
    ]);
    return eraBlocks(xml);
  } finally {
    await dmMessage(name, 'drop_metadata_snap').catch(() => undefined);
  }
}

/**
 * The era blocks written in era `since` or later, from the metadata as the era target last
 * committed it. Only while the target is suspended: its suspend archived the current era's
 * writeset and committed, and nothing writes the metadata until it resumes (a suspended era takes
 * no message, so no metadata snapshot). era_invalidate opens such metadata O_EXCL and O_DIRECT:
 * the target's own loop device answers EBUSY, and a file where O_DIRECT is not supported (the
 * initramfs' rootfs) EINVAL. So it reads a copy (made through the page cache the buffered loop
 * writes to) on a read-only loop device of its own, apart from the live file's.
 */
export async function eraWrittenSinceCommitted(
  metadataFile: string,
  since: number,
): Promise<Array<[number, number]>> {
  const copy = `${metadataFile}.committed`;
  await detachLoop(copy); // left by an agent killed mid-call
  await fs.promises.copyFile(metadataFile, copy);
  try {
    const dev = (await run('losetup', ['--find', '--show', '--read-only', copy])).trim();
    try {
      return eraBlocks(await run('era_invalidate', ['--written-since', String(since), dev]));
    } finally {
      await run('losetup', ['--detach', dev]);
    }
  } finally {
    fs.rmSync(copy, { force: true });
  }
}

/** era_invalidate's answer: <block block="b"/> and <range begin="b" end="e"/>, as [begin, end). */
function eraBlocks(xml: string): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (const m of xml.matchAll(/<block block="(\d+)"\s*\/>|<range begin="(\d+)" end\s*=\s*"(\d+)"\s*\/>/g)) {
    if (m[1] !== undefined) ranges.push([Number(m[1]), Number(m[1]) + 1]);
    else ranges.push([Number(m[2]), Number(m[3])]);
  }
  return ranges;
}

/** The loop device backed by `file` (attached now if none is). */
export async function loopFor(file: string): Promise<string> {
  const found = findLoop(file);
  if (found) return found;
  return (await run('losetup', ['--find', '--show', file])).trim();
}

export function findLoop(file: string): string | undefined {
  let names: string[] = [];
  try {
    names = fs.readdirSync('/sys/block').filter((n) => n.startsWith('loop'));
  } catch {
    return undefined;
  }
  for (const n of names) {
    try {
      if (fs.readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim() === file) return `/dev/${n}`;
    } catch {
      /* not attached */
    }
  }
  return undefined;
}

export async function detachLoop(file: string): Promise<void> {
  const dev = findLoop(file);
  if (dev) await run('losetup', ['--detach', dev]);
}

/** Size of a block device in bytes. */
export async function deviceBytes(device: string): Promise<number> {
  return Number((await run('blockdev', ['--getsize64', device])).trim());
}

export const freezeFs = (mountPoint: string): Promise<string> =>
  run('fsfreeze', ['--freeze', mountPoint], 30_000);
export const thawFs = (mountPoint: string): Promise<string> =>
  run('fsfreeze', ['--unfreeze', mountPoint], 30_000);
