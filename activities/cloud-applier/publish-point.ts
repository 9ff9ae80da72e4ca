// Publishes a recovery point: a blob snapshot of each disk's replica (taken after the cycle is
// applied to every disk, before the next cycle writes), then the catalog entry in the vault.
//
// Idempotent, so an activity retry after any crash ends with exactly one point: a point already in
// the catalog is returned as it is; a snapshot already carrying the point's id in its metadata (a
// crash between snapshot and catalog write) is reused instead of taking another.
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type { PointDisk, PointKind, RecoveryPoint } from '../../shared/replication-types';
import { CONTAINERS, type BlobStorage } from '../../lib/azure/blob-client';
import { Vault, VaultConflictError } from '../../lib/azure/vault';
import type { ApplierDeps } from './replica-disk';
import {
  APPLIED_CYCLE_METADATA_KEY,
  REPLICA_MISSING,
  assertId,
  forEachLimited,
  isNotFound,
  replicaBlobClient,
  replicaBlobName,
} from './replica-disk';

/** Snapshot metadata naming the recovery point a snapshot belongs to. */
export const POINT_METADATA_KEY = 'osrpoint';
/** Failure type: a point with this id exists for another cycle or machine. Non-retryable. */
export const POINT_ID_CONFLICT = FAILURE.PointIdConflict;

export interface PublishPointInput {
  machine: string;
  cycle: number;
  pointId: string;
  /** ISO time the source disks were frozen, on Temporal's clock (shared/point-order.ts). */
  instant: string;
  /** The primary host's clock at the freeze, as read there. */
  sourceInstant?: string;
  /** The protection the point belongs to: points order by it, then by cycle. */
  protection?: string;
  kind: PointKind;
  tag?: string;
  /** Every disk of the point, with its virtual size at the freeze. */
  disks: { diskId: string; sizeBytes: number }[];
}

export async function publishPoint(
  deps: Pick<ApplierDeps, 'blobService' | 'vault'>,
  input: PublishPointInput,
): Promise<RecoveryPoint> {
  assertId('pointId', input.pointId);
  assertId('machine', input.machine);
  if (input.disks.length === 0)
    throw new RangeError(`point ${input.pointId}: a point needs at least one disk`);
  const ids = new Set(input.disks.map((d) => d.diskId));
  if (ids.size !== input.disks.length) throw new RangeError(`point ${input.pointId}: a disk is listed twice`);
  if (Number.isNaN(Date.parse(input.instant)))
    throw new RangeError(`point ${input.pointId}: instant ${input.instant} is not a date`);

  const doc = Vault.pointDoc(input.machine, input.pointId);
  const existing = await deps.vault.read<RecoveryPoint>(doc);
  if (existing) return sameCycleOrFail(existing.value, input);

  const disks: PointDisk[] = new Array<PointDisk>(input.disks.length);
  const taken: PointDisk[] = []; // snapshots this call took (not reused)
  await forEachLimited(input.disks.entries(), 4, async ([i, disk]) => {
    const blob = replicaBlobName(input.machine, disk.diskId);
    let snapshot = await findPointSnapshot(deps.blobService, blob, input.pointId);
    const reused = snapshot !== undefined;
    if (!reused) {
      // Storage remembers which cycle the replica holds: a later rollback of storage shows.
      // Set Metadata replaces all metadata: the replica's other keys (its data size) are kept.
      const replica = replicaBlobClient(deps.blobService, blob);
      await replica
        .getProperties()
        .then((props) =>
          replica.setMetadata({ ...props.metadata, [APPLIED_CYCLE_METADATA_KEY]: String(input.cycle) }),
        )
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err; // a missing replica is reported by the snapshot below
        });
    }
    snapshot ??= await snapshotReplica(deps.blobService, blob, input);
    disks[i] = { diskId: disk.diskId, blob, snapshot, sizeBytes: disk.sizeBytes };
    if (!reused) taken.push(disks[i]);
  });

  const point: RecoveryPoint = {
    id: input.pointId,
    machine: input.machine,
    cycle: input.cycle,
    instant: input.instant,
    ...(input.sourceInstant !== undefined ? { sourceInstant: input.sourceInstant } : {}),
    ...(input.protection !== undefined ? { protection: input.protection } : {}),
    kind: input.kind,
    ...(input.tag !== undefined ? { tag: input.tag } : {}),
    disks,
    createdAt: new Date().toISOString(),
  };
  try {
    await deps.vault.writePoint(point);
    return point;
  } catch (err) {
    if (!(err instanceof VaultConflictError)) throw err;
    // Another attempt of this publish, running at the same time, won: its entry stands. Snapshots
    // this attempt took that the winner does not use would be orphans: delete them.
    const winner = await deps.vault.read<RecoveryPoint>(doc);
    if (!winner) throw err;
    const point = sameCycleOrFail(winner.value, input);
    const used = new Set(point.disks.map((d) => `${d.blob}@${d.snapshot}`));
    await forEachLimited(taken, 4, async (d) => {
      if (used.has(`${d.blob}@${d.snapshot}`)) return;
      await replicaBlobClient(deps.blobService, d.blob).withSnapshot(d.snapshot).deleteIfExists();
    });
    return point;
  }
}

/** The snapshot of a replica blob tagged with this point id, if one was taken. */
export async function findPointSnapshot(
  blobService: BlobStorage,
  blob: string,
  pointId: string,
): Promise<string | undefined> {
  const container = blobService.getContainerClient(CONTAINERS.replica);
  const found: string[] = [];
  try {
    for await (const item of container.listBlobsFlat({
      prefix: blob,
      includeSnapshots: true,
      includeMetadata: true,
    })) {
      if (item.name === blob && item.snapshot && item.metadata?.[POINT_METADATA_KEY] === pointId) {
        found.push(item.snapshot);
      }
    }
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  // Snapshot ids are fixed-width ISO times: the first one taken sorts first.
  return found.sort()[0];
}

async function snapshotReplica(
  blobService: BlobStorage,
  blob: string,
  input: PublishPointInput,
): Promise<string> {
  try {
    const res = await replicaBlobClient(blobService, blob).createSnapshot({
      // Enough to rebuild the catalog entry from storage alone, should the vault ever be lost.
      metadata: {
        [POINT_METADATA_KEY]: input.pointId,
        osrcycle: String(input.cycle),
        osrinstant: input.instant,
        osrkind: input.kind,
        ...(input.sourceInstant ? { osrsourceinstant: input.sourceInstant } : {}),
        ...(input.protection ? { osrprotection: input.protection } : {}),
      },
    });
    if (!res.snapshot) throw new Error(`snapshot of ${CONTAINERS.replica}/${blob} returned no snapshot id`);
    return res.snapshot;
  } catch (err) {
    if (isNotFound(err)) {
      throw ApplicationFailure.nonRetryable(
        `point ${input.pointId}: disk replica ${CONTAINERS.replica}/${blob} does not exist; ` +
          'a point can include a disk only after its initial sync has been applied',
        REPLICA_MISSING,
      );
    }
    throw err;
  }
}

function sameCycleOrFail(point: RecoveryPoint, input: PublishPointInput): RecoveryPoint {
  if (point.machine !== input.machine || point.cycle !== input.cycle) {
    throw ApplicationFailure.nonRetryable(
      `point id ${input.pointId} already names cycle ${point.cycle} of ${point.machine} in the catalog, ` +
        `not cycle ${input.cycle} of ${input.machine}; point ids must be unique`,
      POINT_ID_CONFLICT,
    );
  }
  return point;
}
