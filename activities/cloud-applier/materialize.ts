// Materializes a recovered machine on the recovery-site QEMU host (the machine of the worker that
// runs this): each recovered page blob is downloaded, only its page ranges, into a local sparse
// image under the state folder (qcow2 or raw), and a qemu-storage-daemon serves them (QMP + NBD).
// That daemon is the machine the reprotect work replicates back. Everything lives in one folder
// per job, so dematerializing is stopping the daemon and removing the folder.
import type { BlobStorage } from '../../lib/azure/blob-client';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { MaterializedMachine, MaterializeSettings, RecoveredDisk } from '../../shared/recovery-types';
import { startStorageDaemon, stopStorageDaemon } from '../../lib/qemu/storage-daemon';
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
  // A retried attempt starts over: a half-written image must not be served.
  await dematerialize({ dir });
  await fs.mkdir(dir, { recursive: true });
  const files: MaterializedMachine['files'] = [];
  for (const disk of input.disks) {
    const raw = path.join(dir, `${disk.diskId}.raw`);
    await downloadPageBlob(deps.blobService, disk, raw, deps.onProgress);
    let file = raw;
    if (input.settings.format === 'qcow2') {
      file = path.join(dir, `${disk.diskId}.qcow2`);
      try {
        await execFileAsync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, file]);
      } catch (err) {
        throw new Error(`qemu-img convert of ${raw} failed: ${(err as { stderr?: string }).stderr ?? err}`);
      }
      await fs.rm(raw);
    }
    files.push({ diskId: disk.diskId, path: file });
  }
  if (input.serve === false) return { dir, format: input.settings.format, files };
  const daemon = await startStorageDaemon({
    stateDir: dir,
    images: files.map((f) => ({ path: f.path, format: input.settings.format })),
    // The recovered machine outlives this activity and this worker.
    detached: true,
  });
  return {
    dir,
    format: input.settings.format,
    files,
    qmpSocket: daemon.qmpSocket,
    nbdSocket: daemon.nbdSocket,
    pid: daemon.pid,
  };
}

/** Stops the job's storage daemon, if one runs, and removes its folder. */
export async function dematerialize(input: { dir: string }): Promise<void> {
  await stopStorageDaemon(input.dir);
  await fs.rm(input.dir, { recursive: true, force: true });
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
