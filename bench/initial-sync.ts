// Initial sync of one disk three ways, into the same Azurite: through the product (protect until
// the first recovery point is published), as plain 4 MiB uploadPages calls of the allocated bytes
// into a page blob (what the product's storage writes cost at best), and as `rclone copy` of the
// raw image (what an operator would do without OSR).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ContainerSASPermissions, type BlobServiceClient } from '@azure/storage-blob';
import { NbdClient, NBD_STATE_HOLE, NBD_STATE_ZERO } from '../lib/qemu/nbd-client';
import * as machines from '../operations/machines';
import type { ControlContext } from '../operations/context';
import type { Extent } from './disk-data';
import { activitySpans, formatPhases, phases, sliceGaps } from './history';
import { runCommand, secondsSince, sleep, type Cleanup } from './harness';

/** The most one Put Page call may carry (Azure's limit, and OSR's segment size). */
export const PUT_PAGE_BYTES = 4 * 1024 * 1024;

export interface CopyResult {
  method: string;
  seconds: number;
  /** Bytes that went over the wire to storage (payloads only). */
  uploadedBytes: number;
  detail?: string;
}

export interface OsrSyncResult extends CopyResult {
  bytesChanged: number;
  /** Seconds from protect until every segment was uploaded (the last transferDisk's close). */
  transferSeconds?: number;
  phases: string;
  /** transferDisk activities (slices of 64 segments) and the idle seconds between them. */
  slices: { slices: number; gapSeconds: number };
}

/** The disk's allocated extents as the process server sees them (`base:allocation`, data only). */
export async function allocatedExtents(socket: string, exportName: string): Promise<Extent[]> {
  const nbd = await NbdClient.connect({ socket, exportName, metaContexts: ['base:allocation'] });
  try {
    const all = await nbd.blockStatus(0, nbd.size, 'base:allocation');
    const data = all.filter((e) => (e.flags & (NBD_STATE_HOLE | NBD_STATE_ZERO)) === 0);
    const out: Extent[] = [];
    for (const e of data) {
      const last = out[out.length - 1];
      if (last && last.offset + last.length === e.offset) last.length += e.length;
      else out.push({ offset: e.offset, length: e.length });
    }
    return out;
  } finally {
    await nbd.close();
  }
}

/** Protects the machine and waits for its first point; the clock runs from the protect call. */
export async function osrInitialSync(
  ctx: ControlContext,
  machine: { name: string; qmpSocket: string; nbdSocket: string; policy: string },
  options: { timeoutMs?: number; onTransferDone?: () => void } = {},
): Promise<OsrSyncResult> {
  const timeoutMs = options.timeoutMs ?? 15 * 60_000;
  const fromWall = Date.now();
  const start = performance.now();
  await machines.protect(ctx, machine);
  let uploaded = false;
  for (;;) {
    if (performance.now() - start > timeoutMs)
      throw new Error(`initial sync of ${machine.name} took over ${timeoutMs / 1000} s`);
    const status = await machines.machineStatus(ctx, machine.name).catch(() => undefined);
    const p = status?.progress?.[0];
    if (!uploaded && p && p.segmentsTotal > 0 && p.segmentsDone === p.segmentsTotal) {
      uploaded = true;
      options.onTransferDone?.();
    }
    if (status?.state === 'protected' && status.lastPoint) {
      const seconds = secondsSince(start);
      const spans = await activitySpans(await ctx.client(), machine.name);
      // When the last segment was up, by Temporal's clock (the status poll is too coarse for it).
      const sent = spans.filter((s) => s.type === 'transferDisk' && s.scheduledMs >= fromWall);
      const sentMs = Math.max(...sent.map((s) => s.closedMs ?? Infinity));
      return {
        method: 'OSR protect → first point',
        seconds,
        uploadedBytes: status.stats.bytesSent,
        bytesChanged: status.stats.bytesChanged,
        transferSeconds: sent.length && Number.isFinite(sentMs) ? (sentMs - fromWall) / 1000 : undefined,
        phases: formatPhases(phases(spans, fromWall - 1000, Date.now())),
        slices: sliceGaps(spans, fromWall - 1000, Date.now()),
      };
    }
    if (status && status.stats.failedCycles > 0) {
      throw new Error(`initial sync of ${machine.name} failed: ${JSON.stringify(status.alerts.slice(-3))}`);
    }
    // Once every segment is up the point is near: look often, so the clock stops within 25 ms of
    // it (the baselines' stop at their last byte); before, rarely, to leave the CPU to the sync.
    await sleep(uploaded ? 25 : 250);
  }
}

/** The allocated bytes of `rawFile`, read and sent as Put Page calls of at most 4 MiB, `concurrency` at once. */
export async function uploadPagesCopy(
  blobService: BlobServiceClient,
  rawFile: string,
  extents: readonly Extent[],
  diskBytes: number,
  concurrency: number,
): Promise<CopyResult> {
  const container = blobService.getContainerClient('bench-baseline');
  await container.createIfNotExists();
  const blob = container.getPageBlobClient(`upload-pages-${concurrency}`);
  const pieces: Extent[] = [];
  for (const e of extents) {
    for (let done = 0; done < e.length; done += PUT_PAGE_BYTES)
      pieces.push({ offset: e.offset + done, length: Math.min(PUT_PAGE_BYTES, e.length - done) });
  }
  const file = await fs.promises.open(rawFile, 'r');
  let uploaded = 0;
  try {
    const start = performance.now();
    await blob.create(diskBytes);
    let next = 0;
    const lane = async (): Promise<void> => {
      const buf = Buffer.allocUnsafe(PUT_PAGE_BYTES);
      while (next < pieces.length) {
        const piece = pieces[next++] as Extent;
        const body = buf.subarray(0, piece.length);
        const { bytesRead } = await file.read(body, 0, piece.length, piece.offset);
        if (bytesRead !== piece.length) throw new Error(`short read of ${rawFile} at ${piece.offset}`);
        await blob.uploadPages(body, piece.offset, piece.length);
        uploaded += piece.length;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, lane));
    const seconds = secondsSince(start);
    return {
      method: concurrency === 1 ? 'uploadPages, one at a time' : `uploadPages, ${concurrency} at once`,
      seconds,
      uploadedBytes: uploaded,
      detail: `${pieces.length} calls`,
    };
  } finally {
    await file.close();
    // Free Azurite of the copy before the next method runs.
    await blob.deleteIfExists({ deleteSnapshots: 'include' }).catch(() => undefined);
  }
}

/** Why the rclone baseline cannot run here, with the command that fixes it; undefined when it can. */
export function rcloneUnavailable(): string | undefined {
  const probe = spawnSync('rclone', ['version'], { stdio: 'ignore' });
  if (!probe.error && probe.status === 0) return undefined;
  return (
    `rclone is not installed (${probe.error?.message ?? `rclone version exited ${probe.status}`}); ` +
    'install it with `apt-get install rclone` or `OSR_SETUP_BENCH=1 npm run setup`'
  );
}

/** `rclone copy` of the raw image into a container, through a container SAS URL (see bench notes). */
export async function rcloneCopy(
  cleanup: Cleanup,
  blobService: BlobServiceClient,
  rawFile: string,
  workDir: string,
  /** Run rclone elsewhere (`ip netns exec <ns>`), reaching the account at `host` instead of loopback. */
  site?: { prefix: string[]; host: string },
): Promise<CopyResult> {
  const containerName = 'bench-rclone';
  const container = blobService.getContainerClient(containerName);
  await container.createIfNotExists();
  const sasUrl = await container.generateSasUrl({
    permissions: ContainerSASPermissions.parse('racwdl'),
    expiresOn: new Date(Date.now() + 2 * 3600_000),
  });
  const env = {
    ...process.env,
    // An empty config file, not the user's: the remote comes from these variables only.
    RCLONE_CONFIG: path.join(workDir, 'rclone.conf'),
    RCLONE_CONFIG_AZ_TYPE: 'azureblob',
    RCLONE_CONFIG_AZ_SAS_URL: site ? sasUrl.replace('//127.0.0.1:', `//${site.host}:`) : sasUrl,
  };
  await fs.promises.writeFile(env.RCLONE_CONFIG, '');
  const size = (await fs.promises.stat(rawFile)).size;
  const name = path.basename(rawFile);
  try {
    const start = performance.now();
    // With a container SAS the remote's root is not writable ("can't upload to root"): name the container.
    const [command, ...args] = [...(site?.prefix ?? []), 'rclone'];
    await runCommand(
      cleanup,
      command as string,
      [...args, 'copy', rawFile, `az:${containerName}`, '--retries', '1'],
      {
        env,
        timeoutMs: 15 * 60_000,
      },
    );
    const seconds = secondsSince(start);
    const copied = (await container.getBlobClient(name).getProperties()).contentLength ?? 0;
    if (copied !== size) throw new Error(`rclone left a blob of ${copied} bytes, the image has ${size}`);
    const { stdout } = await runCommand(cleanup, 'rclone', ['version'], { env });
    return {
      method: 'rclone copy of the raw image',
      seconds,
      uploadedBytes: size,
      detail: `${stdout.split('\n')[0]?.trim() ?? 'rclone'}, default flags + --retries 1 (block blob, whole image incl. holes)`,
    };
  } finally {
    await container
      .getBlobClient(name)
      .deleteIfExists()
      .catch(() => undefined);
  }
}

/** The disk as a raw image, read through the machine's NBD export (holes stay holes in the file). */
export async function rawImage(
  cleanup: Cleanup,
  nbdSocket: string,
  exportName: string,
  outFile: string,
): Promise<number> {
  const start = performance.now();
  await runCommand(cleanup, 'qemu-img', [
    'convert',
    '-f',
    'raw',
    '-O',
    'raw',
    `nbd+unix:///${exportName}?socket=${nbdSocket}`,
    outFile,
  ]);
  return secondsSince(start);
}
