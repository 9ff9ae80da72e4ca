// Replica disks: one page blob per protected disk in the container osr-replica, named
// <machine>/<diskId>, laid out as a fixed VHD (data, then a 512-byte footer) so Azure can import it
// or any of its snapshots as a managed disk. The applier writes cycles into its data area; its blob
// snapshots are the recovery points.
// Also what the other applier modules share: the dependencies they take, and (re-exported from
// lib/azure/page-blobs.ts) page-range listing and bounded concurrency.
import type { PageBlobClient } from '@azure/storage-blob';
import { RestError } from '@azure/storage-blob';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type { Vault } from '../../lib/azure/vault';
import { CONTAINERS, type BlobStorage } from '../../lib/azure/blob-client';
import type { BlockPipeline } from '../../lib/segments/block-pipeline';
import { assertId, deleteBlobsUnder, isNotFound, roundUpToPage } from '../../lib/azure/page-blobs';
import { createFixedVhd, ensureFixedVhd, readVhdBlobState } from '../../lib/azure/vhd-blob';
import {
  MAX_PAGE_BLOB_BYTES,
  MAX_VHD_VIRTUAL_BYTES,
  vhdBlobBytes,
  vhdVirtualBytes,
} from '../../lib/disk/vhd';

export {
  MAX_PAGE_WRITE_BYTES,
  PAGE_BYTES,
  assertId,
  deleteBlobsUnder,
  forEachLimited,
  isNotFound,
  listPages,
  roundUpToPage,
  type ListPagesOptions,
} from '../../lib/azure/page-blobs';

/** What the applier's functions work with; each function takes only the part it needs. */
export interface ApplierDeps {
  blobService: BlobStorage;
  pipeline: BlockPipeline;
  vault: Vault;
}

/** Error type of the failure thrown when a disk is smaller than its replica. */
export const DISK_SHRUNK = FAILURE.DiskShrunk;
/** Error type of the failure thrown when a disk has no replica where one is needed. Non-retryable. */
export const REPLICA_MISSING = FAILURE.ReplicaMissing;
/** Error type of the failure thrown when a disk's VHD would not fit in a page blob (8 TiB). Non-retryable. */
export const DISK_TOO_LARGE = FAILURE.DiskTooLarge;

export interface ReplicaDiskInput {
  machine: string;
  diskId: string;
  /**
   * The disk's virtual size now; the replica's data area is made at least this big (rounded up to
   * 512; the blob is a fixed VHD of this rounded up to a MiB, plus its footer).
   */
  sizeBytes: number;
}

export interface ReplicaDisk {
  /** Blob name in osr-replica. */
  blob: string;
  /** The replica was there before this call. */
  existed: boolean;
  /**
   * The replica's data area after this call (a multiple of 512): the disk's size rounded up to 512.
   * The blob itself is longer (a fixed VHD: the data area rounded up to a MiB, then the footer).
   */
  sizeBytes: number;
  /**
   * The last cycle published into this replica, as storage remembers it (0: none). Less than the
   * workflow's own count means storage lost writes it had acknowledged (an emulator restarted
   * without having saved them): the replica can no longer be trusted and is resynchronized.
   */
  appliedCycle: number;
}

/** Base-blob metadata: the last cycle published into the replica (set before its snapshot). */
export const APPLIED_CYCLE_METADATA_KEY = 'osrcycle';

export function replicaBlobName(machine: string, diskId: string): string {
  assertId('machine', machine);
  assertId('diskId', diskId);
  return `${machine}/${diskId}`;
}

export function replicaBlobClient(blobService: BlobStorage, blob: string): PageBlobClient {
  return blobService.getContainerClient(CONTAINERS.replica).getPageBlobClient(blob);
}

/**
 * Makes sure the replica page blob of a disk exists, is a fixed VHD (what Azure imports as a
 * managed disk: lib/azure/vhd-blob.ts) and its data area is at least as big as the disk: creates
 * it (all pages empty, i.e. zeros, then the footer), grows it (footer rewritten at the new end), or
 * converts a replica made before replicas were VHDs (resized, footer written, data untouched).
 * Every step is safe to repeat, so a retried attempt finishes what an interrupted one began.
 * A disk smaller than its replica is refused with a non-retryable DiskShrunk failure: shrinking
 * would cut the tail off an image that recovery points share, and retrying cannot fix it. A disk
 * whose VHD would not fit in a page blob (8 TiB) is refused with DiskTooLarge.
 */
export async function ensureReplicaDisk(
  deps: Pick<ApplierDeps, 'blobService'>,
  input: ReplicaDiskInput,
): Promise<ReplicaDisk> {
  const blob = replicaBlobName(input.machine, input.diskId);
  if (!Number.isSafeInteger(input.sizeBytes) || input.sizeBytes <= 0) {
    throw new RangeError(
      `disk ${input.diskId} of ${input.machine}: sizeBytes must be an integer > 0, got ${input.sizeBytes}`,
    );
  }
  assertFitsPageBlob(input);
  const wanted = roundUpToPage(input.sizeBytes);
  const client = replicaBlobClient(deps.blobService, blob);

  let props = await pageBlobProperties(client);
  if (props === undefined) {
    if (await createPageBlob(deps.blobService, client, wanted))
      return { blob, existed: false, sizeBytes: wanted, appliedCycle: 0 };
    props = await pageBlobProperties(client); // someone created it between our two calls
  }
  if (props === undefined)
    throw new Error(`replica ${CONTAINERS.replica}/${blob} vanished while being created`);
  const appliedCycle = Number(props.metadata[APPLIED_CYCLE_METADATA_KEY] ?? 0) || 0;
  const state = await readVhdBlobState(client, { blobBytes: props.size, metadata: props.metadata });
  // What the replica holds data for: its recorded data size; without a record, all of a blob
  // from before VHDs, or (a footer but no record) the footer's virtual size, compared by MiB.
  const current = state.recordedDataBytes ?? (state.footer ? undefined : state.blobBytes);
  const shrunk =
    current !== undefined
      ? wanted < current
      : state.footer !== undefined && vhdVirtualBytes(wanted) < state.footer.currentSize;
  if (shrunk) {
    const holds = current ?? state.footer!.currentSize;
    throw ApplicationFailure.nonRetryable(
      `disk ${input.diskId} of machine ${input.machine} is ${input.sizeBytes} bytes but its replica ` +
        `(${CONTAINERS.replica}/${blob}) holds ${holds}: a disk that shrank cannot be applied to its replica. ` +
        `Grow the disk back to at least ${holds} bytes, or remove the disk from protection and add it ` +
        'again so that a new replica is built by a full sync (existing recovery points keep the old size).',
      DISK_SHRUNK,
      { machine: input.machine, diskId: input.diskId, sizeBytes: input.sizeBytes, replicaBytes: holds },
    );
  }
  await ensureFixedVhd(client, state, wanted);
  return { blob, existed: true, sizeBytes: wanted, appliedCycle };
}

/**
 * Refuses, non-retryably and with the fix, a disk whose fixed VHD (virtual size rounded up to a
 * MiB, plus the footer) would not fit in one page blob.
 */
export function assertFitsPageBlob(input: ReplicaDiskInput): void {
  if (input.sizeBytes <= MAX_VHD_VIRTUAL_BYTES) return;
  throw ApplicationFailure.nonRetryable(
    `disk ${input.diskId} of machine ${input.machine} is ${input.sizeBytes} bytes; its replica, a fixed VHD ` +
      `of ${vhdBlobBytes(input.sizeBytes)} bytes, would not fit in an Azure page blob (at most ${MAX_PAGE_BLOB_BYTES} ` +
      `bytes, so a disk of at most ${MAX_VHD_VIRTUAL_BYTES} bytes). Shrink the disk below that, split its data ` +
      'over several disks, or remove it from protection.',
    DISK_TOO_LARGE,
    {
      machine: input.machine,
      diskId: input.diskId,
      sizeBytes: input.sizeBytes,
      maxBytes: MAX_VHD_VIRTUAL_BYTES,
    },
  );
}

/**
 * Deletes every replica page blob of a machine together with its snapshots (so every recovery
 * point image of it). Catalog documents in the vault are not touched. Returns the blob names deleted.
 */
export async function deleteReplica(
  deps: Pick<ApplierDeps, 'blobService'>,
  machine: string,
): Promise<string[]> {
  assertId('machine', machine);
  return deleteBlobsUnder(deps.blobService.getContainerClient(CONTAINERS.replica), `${machine}/`);
}

/** Size of a page blob, undefined if it does not exist; refuses a blob of another type. */
async function pageBlobProperties(
  client: PageBlobClient,
): Promise<{ size: number; metadata: Record<string, string> } | undefined> {
  try {
    const props = await client.getProperties();
    if (props.blobType !== undefined && props.blobType !== 'PageBlob') {
      throw new Error(
        `${client.containerName}/${client.name} is a ${props.blobType}, not a page blob; delete it`,
      );
    }
    return { size: props.contentLength ?? 0, metadata: props.metadata ?? {} };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * Creates the blob, an empty fixed VHD for `dataBytes`, unless it exists; true if this call
 * created it. Creates the container if missing.
 */
async function createPageBlob(
  blobService: BlobStorage,
  client: PageBlobClient,
  dataBytes: number,
): Promise<boolean> {
  try {
    return await createFixedVhd(client, dataBytes);
  } catch (err) {
    if (!(err instanceof RestError && err.code === 'ContainerNotFound')) throw err;
  }
  await blobService.getContainerClient(client.containerName).createIfNotExists();
  return createFixedVhd(client, dataBytes);
}
