// Materializes a recovered machine on the recovery-site QEMU host (the machine of the worker that
// runs this): each recovered page blob is downloaded, only its page ranges, into a local sparse
// image under the state folder (qcow2 or raw), and a qemu-storage-daemon serves them (QMP + NBD).
// That daemon is the machine the reprotect work replicates back. Everything lives in one folder
// per job, so dematerializing is stopping the daemon and removing the folder. A retried attempt
// reuses a finished folder: images a running machine uses are never made again.
import type { BlobStorage } from '../../lib/azure/blob-client';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { MaterializedMachine, MaterializeSettings, RecoveredDisk } from '../../shared/recovery-types';
import {
  runningStorageDaemon,
  startStorageDaemon,
  stopStorageDaemon,
  storageDaemonPaths,
} from '../../lib/qemu/storage-daemon';
import { failoverBlobClient } from './recovered-disks';
import { assertId, forEachLimited, listPages } from './replica-disk';

const execFileAsync = promisify(execFile);
const CHUNK_BYTES = 4 * 1024 * 1024;

export interface MaterializeInput {
  machine: string;
  job: string;
  disks: RecoveredDisk[];
  settings: MaterializeSettings;
  /** false: the images only, no daemon (a libvirt domain opens them itself; a daemon would hold their locks). */
  serve?: boolean;
}

/** Folder of one job's local disks and daemon: short, because unix socket paths are limited. */
export function materializedDir(stateDir: string, machine: string, job: string): string {
  assertId('machine', machine);
  assertId('job', job);
  return path.join(stateDir, 'recovered', `${machine}-${job}`);
}

export async function materialize(
  deps: { blobService: BlobStorage; stateDir: string; onProgress?: () => void },
  input: MaterializeInput,
): Promise<MaterializedMachine> {
  const dir = materializedDir(deps.stateDir, input.machine, input.job);
  const made = (await readMade(dir)) ?? (await makeInPlace(deps, input, dir));
  const files = made.files.map((f) => ({ diskId: f.diskId, path: path.join(dir, f.name) }));
  if (input.serve === false) return { dir, format: made.format, files };
  const paths = storageDaemonPaths(dir);
  // A retry after the daemon started finds it serving: the machine is up, not to be started twice.
  const pid =
    (await runningStorageDaemon(dir)) ??
    (
      await startStorageDaemon({
        stateDir: dir,
        images: files.map((f) => ({ path: f.path, format: made.format })),
        // The recovered machine outlives this activity and this worker.
        detached: true,
      })
    ).pid;
  return { dir, format: made.format, files, qmpSocket: paths.qmpSocket, nbdSocket: paths.nbdSocket, pid };
}

/** What a finished materialization holds, written last in its folder. */
interface Made {
  format: MaterializeSettings['format'];
  files: { diskId: string; name: string }[];
}
const MADE = 'materialized.json';

async function readMade(dir: string): Promise<Made | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(dir, MADE), 'utf8')) as Made;
  } catch {
    return undefined;
  }
}

/**
 * Makes the images in a folder of this attempt's own and moves it into place whole. An attempt
 * Temporal gave up on (its heartbeat lost on a loaded host) may still be running: it must never
 * write, truncate or delete images that a later attempt handed to a running machine. So no
 * attempt touches `dir` but by the final rename, which fails when another attempt finished first.
 */
async function makeInPlace(
  deps: { blobService: BlobStorage; onProgress?: () => void },
  input: MaterializeInput,
  dir: string,
): Promise<Made> {
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const work = await fs.mkdtemp(`${dir}${ATTEMPT}`);
  try {
    const made: Made = { format: input.settings.format, files: [] };
    for (const disk of input.disks) made.files.push(await makeImage(deps, disk, input.settings, work));
    await fs.writeFile(path.join(work, MADE), JSON.stringify(made));
    if (!(await moveInto(work, dir)) && !(await readMade(dir))) {
      // A folder born without the mark is an unfinished one of a version that made images in place.
      await stopStorageDaemon(dir);
      await fs.rm(dir, { recursive: true, force: true });
      await moveInto(work, dir);
    }
    // Ours, or the one another attempt moved into place first.
    const done = await readMade(dir);
    if (!done) throw new Error(`materialized images of ${input.machine} did not land in ${dir}: try again`);
    return done;
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** Renames `from` to `to` unless `to` exists already (then false). */
async function moveInto(from: string, to: string): Promise<boolean> {
  try {
    await fs.rename(from, to);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw err;
  }
}

async function makeImage(
  deps: { blobService: BlobStorage; onProgress?: () => void },
  disk: RecoveredDisk,
  settings: MaterializeSettings,
  work: string,
): Promise<{ diskId: string; name: string }> {
  const raw = path.join(work, `${disk.diskId}.raw`);
  await downloadPageBlob(deps.blobService, disk, raw, deps.onProgress);
  if (settings.format !== 'qcow2') return { diskId: disk.diskId, name: path.basename(raw) };
  const qcow2 = path.join(work, `${disk.diskId}.qcow2`);
  try {
    await execFileAsync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  } catch (err) {
    throw new Error(`qemu-img convert of ${raw} failed: ${(err as { stderr?: string }).stderr ?? err}`);
  }
  await fs.rm(raw);
  return { diskId: disk.diskId, name: path.basename(qcow2) };
}

/** Attempts' folders are `<dir>.attempt-XXXXXX`, beside the job's folder. */
const ATTEMPT = '.attempt-';

/** Stops the job's storage daemon, if one runs, and removes its folder (and unfinished attempts'). */
export async function dematerialize(input: { dir: string }): Promise<void> {
  await stopStorageDaemon(input.dir);
  await fs.rm(input.dir, { recursive: true, force: true });
  const parent = path.dirname(input.dir);
  const prefix = `${path.basename(input.dir)}${ATTEMPT}`;
  const siblings = await fs.readdir(parent).catch(() => [] as string[]);
  for (const name of siblings.filter((n) => n.startsWith(prefix)))
    await fs.rm(path.join(parent, name), { recursive: true, force: true });
}

/** Writes a page blob's pages into a sparse raw file of the disk's size. */
async function downloadPageBlob(
  blobService: BlobStorage,
  disk: RecoveredDisk,
  file: string,
  onProgress?: () => void,
): Promise<void> {
  const blob = failoverBlobClient(blobService, disk.blob);
  const chunks: { offset: number; length: number }[] = [];
  for (const range of await listPages(blob, disk.sizeBytes)) {
    const end = Math.min(disk.sizeBytes, range.offset + range.length);
    for (let at = range.offset; at < end; at += CHUNK_BYTES)
      chunks.push({ offset: at, length: Math.min(CHUNK_BYTES, end - at) });
  }
  const handle = await fs.open(file, 'w');
  try {
    await handle.truncate(disk.sizeBytes);
    await forEachLimited(chunks, 4, async (chunk) => {
      const data = await blob.downloadToBuffer(chunk.offset, chunk.length);
      if (data.length !== chunk.length)
        throw new Error(`read ${data.length} of ${chunk.length} bytes of ${disk.blob} at ${chunk.offset}`);
      for (let at = 0; at < data.length; ) {
        const { bytesWritten } = await handle.write(data, at, data.length - at, chunk.offset + at);
        at += bytesWritten;
      }
      onProgress?.();
    });
    await handle.sync();
  } finally {
    await handle.close();
  }
}
