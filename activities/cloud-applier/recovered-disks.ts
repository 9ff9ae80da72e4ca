// Recovered disks: the disks of a drill or failed-over machine, made in container osr-failover
// from a recovery point by a SERVER-SIDE copy of each disk's replica snapshot (Copy Blob of the
// snapshot URL into a new page blob). No disk byte passes through the worker; the result is an
// ordinary, writable page blob. Azurite 3.35 supports this (checked: the copy is a page blob with
// the snapshot's pages, writable), so there is no streamed fallback. Copy Blob From URL
// (syncCopyFromURL) is not used: on Azure it makes block blobs only.
//
// Every recovered disk is a fixed VHD (lib/azure/vhd-blob.ts), importable by Azure as a managed
// disk (`az disk create --source <blob url>`); only its data area [0, sizeBytes) is read back.
//
// Idempotent: a retried attempt finds the blob already copied from the same snapshot (metadata)
// and keeps it; a blob of the same name from another point is replaced.
import type { PageBlobClient } from '@azure/storage-blob';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type { RecoveredDisk, RecoveredMachine, RecoveryKind } from '../../shared/recovery-types';
import { recoveredPrefix, recoveryDocs } from '../../shared/recovery-types';
import type { RecoveryPoint } from '../../shared/replication-types';
import { CONTAINERS, type BlobStorage } from '../../lib/azure/blob-client';
import type { Vault } from '../../lib/azure/vault';
import { ensureFixedVhd, readVhdBlobState } from '../../lib/azure/vhd-blob';
import { assertId, deleteBlobsUnder, forEachLimited, isNotFound, replicaBlobClient } from './replica-disk';

/** Failure type: a disk image of the point is gone (pruned). Non-retryable: choose another point. */
export const POINT_IMAGE_MISSING = FAILURE.PointImageMissing;

export interface RecoveredDisksInput {
  kind: RecoveryKind;
  machine: string;
  job: string;
  point: RecoveryPoint;
  /** Reports each disk once its copy is complete. */
  onDisk?: (disk: RecoveredDisk) => void;
}

export function failoverBlobClient(blobService: BlobStorage, blob: string): PageBlobClient {
  return blobService.getContainerClient(CONTAINERS.failover).getPageBlobClient(blob);
}

export async function createRecoveredDisks(
  deps: { blobService: BlobStorage },
  input: RecoveredDisksInput,
): Promise<RecoveredDisk[]> {
  assertId('machine', input.machine);
  assertId('job', input.job);
  await deps.blobService.getContainerClient(CONTAINERS.failover).createIfNotExists();
  const prefix = recoveredPrefix(input.kind, input.machine, input.job);
  const out: RecoveredDisk[] = new Array<RecoveredDisk>(input.point.disks.length);
  await forEachLimited(input.point.disks.entries(), 4, async ([i, disk]) => {
    const source = replicaBlobClient(deps.blobService, disk.blob).withSnapshot(disk.snapshot);
    const target = failoverBlobClient(deps.blobService, `${prefix}/${disk.diskId}`);
    const origin = `${disk.blob}@${disk.snapshot}`;
    const existing = await target.getProperties().catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    const done = existing?.copyStatus === 'success' && existing.metadata?.osrsource === origin;
    if (!done) {
      try {
        await source.getProperties();
      } catch (err) {
        if (!isNotFound(err)) throw err;
        throw ApplicationFailure.nonRetryable(
          `the image of disk ${disk.diskId} of point ${input.point.id} (${CONTAINERS.replica}/${origin}) no longer exists: pruned by retention? Choose another point`,
          POINT_IMAGE_MISSING,
        );
      }
      // Copy Blob of a snapshot URL in the same account: authorized by the account key, async on Azure.
      const poller = await target.beginCopyFromURL(source.url, {
        metadata: { osrsource: origin, osrpoint: input.point.id, osrjob: input.job },
      });
      const result = await poller.pollUntilDone();
      if (result.copyStatus !== 'success')
        throw new Error(
          `copy of ${origin} into ${CONTAINERS.failover}/${target.name} ended ${result.copyStatus}`,
        );
    }
    // A snapshot of a replica is a fixed VHD already; one taken before replicas were VHDs is
    // raw, and its copy is made one here (resized, footer written; data untouched).
    await ensureFixedVhd(target, await readVhdBlobState(target), disk.sizeBytes);
    out[i] = { diskId: disk.diskId, blob: target.name, sizeBytes: disk.sizeBytes, copy: 'server' };
    input.onDisk?.(out[i]);
  });
  return out;
}

/** Deletes a recovered machine's disks (every blob under its folder); returns the names deleted. */
export async function deleteRecoveredDisks(
  deps: { blobService: BlobStorage },
  input: { kind: RecoveryKind; machine: string; job: string },
): Promise<string[]> {
  assertId('machine', input.machine);
  assertId('job', input.job);
  // The trailing slash keeps job 1 from matching job 10.
  const prefix = `${recoveredPrefix(input.kind, input.machine, input.job)}/`;
  return deleteBlobsUnder(deps.blobService.getContainerClient(CONTAINERS.failover), prefix);
}

/** Writes (or replaces) the record of a recovered machine in the vault. */
export async function recordRecoveredMachine(
  deps: { vault: Vault },
  record: RecoveredMachine,
): Promise<void> {
  await deps.vault.write(recoveryDocs.recovered(record.machine, record.job), record, '*');
}

export async function removeRecoveredRecord(
  deps: { vault: Vault },
  input: { machine: string; job: string },
): Promise<void> {
  await deps.vault.remove(recoveryDocs.recovered(input.machine, input.job));
}
