// The process server's data path for one disk of one frozen point: list the extents the cycle
// sends, cut them into segments, read each segment's blocks over NBD, run them through the block
// pipeline (zero detection, hash, zstd, AES-GCM) and upload them to the cache container.
//
// Resumable: the extent list is stored with the cycle's segments on the first call, so every
// later slice, retry or resend cuts the same segments; the activity heartbeats the index below
// which every segment is uploaded, and a retried attempt starts there: at most the segments that
// were in flight are sent twice.
import { FAILURE } from '../../shared/failures';
import type { ContainerClient } from '@azure/storage-blob';
import { ApplicationFailure } from '@temporalio/common';
import { readExtents } from '../../lib/disk/extents';
import { segmentBlobName, segmentCyclePrefix } from '../../lib/segments/cache-layout';
import type { BlockPipeline } from '../../lib/segments/block-pipeline';
import { noteGivenUpPoint } from '../../lib/observability/state-disk';
import {
  FrozenPointGivenUpError,
  FrozenPointLostError,
  SourceUnreachableError,
  type FrozenDiskReader,
} from '../../lib/sources/source-connector';
import type { FrozenDisk, FrozenPoint, TransferMode, TransferSummary } from '../../shared/replication-types';
import { CONTAINERS, type BlobStorage } from '../../lib/azure/blob-client';
import { writeCycleManifest } from '../../lib/segments/cycle-layout';
import { readCyclePlan, writeCyclePlan } from '../../lib/segments/cycle-plan';
import { planSegments, totalBytes, type SegmentPlan } from '../../lib/segments/extent-plan';
import type { StorageTrouble } from '../../shared/storage-faults';
import type { ReportsStorageFaults } from '../common/storage-failure';
import type { IntakeGate } from '../../lib/segments/intake-gate';
import { Semaphore } from '../../lib/segments/semaphore';
import { sourceKind } from './source';

export interface TransferDiskInput extends ReportsStorageFaults {
  point: FrozenPoint;
  diskId: string;
  mode: TransferMode;
  /** First segment index of this slice. */
  fromIndex: number;
  maxSegments: number;
  /** Resend only these segments (they failed verification in the cache). */
  onlySegments?: number[];
  /** Replica checksums (resync mode), written by the cloud applier. */
  checksumsBlob?: string;
}

export interface TransferSlice {
  nextIndex: number;
  done: boolean;
  segmentsTotal: number;
  bytesTotal: number;
  /** Disk bytes covered by segments below nextIndex. */
  bytesDone: number;
  summary: TransferSummary;
  /** What the storage endpoint did to this slice's requests (retried throttling, time-outs), if anything. */
  storage?: StorageTrouble;
}

export interface TransferDeps {
  blobService: BlobStorage;
  pipeline: BlockPipeline;
  uploadConcurrency: number;
  /** Called with the index below which every segment is uploaded (heartbeat). */
  heartbeat: (cursor: { nextIndex: number }) => void;
  /** The cursor a previous attempt of this same activity heartbeated, if any. */
  resumeCursor?: { nextIndex: number };
  isCancelled?: () => boolean;
  /** The process's spool bound (read → upload); without one, only the pipeline's encode bound applies. */
  intake?: IntakeGate;
  /** Resolves when `bytes` of the machine's segments may be uploaded (its policy's bandwidth limit). */
  throttle?: (machine: string, bytes: number) => Promise<void>;
}

export async function transferDisk(deps: TransferDeps, input: TransferDiskInput): Promise<TransferSlice> {
  const { point, diskId } = input;
  const disk = point.disks.find((d) => d.diskId === diskId);
  if (!disk) throw new Error(`disk ${diskId} is not part of point ${point.pitId}`);
  const cache = deps.blobService.getContainerClient(CONTAINERS.cache);
  // The machine's bandwidth limits are read from the vault on the first upload's take: taking
  // nothing now reads them while the plan and the first segments are read, not after.
  void deps.throttle?.(point.machine, 0).catch(() => undefined);
  // A remote libvirt host's export is read through an SSH tunnel (lib/libvirt/frozen-disk.ts); an
  // agent's frozen disk through the agent's connection (lib/sources/agent-source.ts).
  const reader = await sourceKind(disk.agentId ? 'agent' : disk.nbdSocketHost ? 'libvirt' : undefined)
    .openFrozenDisk(disk)
    .catch((err: Error) => {
      if (err instanceof SourceUnreachableError) {
        // The VM or storage daemon is gone: retrying for minutes would hide it. Fail the cycle now;
        // the workflow alerts, backs off and keeps the changes for when the source answers again.
        throw ApplicationFailure.create({
          type: FAILURE.SourceUnreachable,
          nonRetryable: true,
          message: `the source of ${point.machine} does not answer on ${disk.nbdSocket}${disk.nbdSocketHost ? ` (on ${disk.nbdSocketHost})` : ''}: ${err.message}`,
        });
      }
      if (!(err instanceof FrozenPointLostError)) throw err;
      throw pointLost(point, disk, err);
    });
  try {
    let plan = await readCyclePlan(cache, point.machine, diskId, point.cycle);
    // Another freeze's plan under this cycle number is not this cycle's (workflow.ts clears those
    // a protection could find; this keeps a leftover from ever choosing what is sent).
    if (plan?.instant !== undefined && plan.instant !== point.instant) plan = undefined;
    if (!plan) {
      // A cycle number seen before (a machine protected again) must not mix old segments in.
      for await (const old of cache.listBlobsFlat({
        prefix: segmentCyclePrefix(point.machine, diskId, point.cycle),
      })) {
        await cache.deleteBlob(old.name).catch(() => undefined);
      }
      const extents = await reader.changedExtents({
        mode: input.mode,
        checksums: input.checksumsBlob
          ? { blobService: deps.blobService, blob: input.checksumsBlob }
          : undefined,
        onProgress: () => deps.heartbeat({ nextIndex: input.fromIndex }),
      });
      plan = { mode: input.mode, sizeBytes: disk.sizeBytes, extents, instant: point.instant };
      await writeCyclePlan(cache, point.machine, diskId, point.cycle, plan);
    }
    const segments = planSegments(plan.extents);
    const bytesTotal = totalBytes(plan.extents);
    const sliceEnd = input.fromIndex + input.maxSegments;
    let wanted: SegmentPlan[];
    let resumed = 0;
    let cursor = input.fromIndex;
    let present = new Set<number>();
    if (input.onlySegments) {
      wanted = segments.filter((s) => input.onlySegments?.includes(s.index));
    } else {
      // A retried attempt skips what an earlier one finished: below its heartbeated cursor, and
      // beyond it every segment already in the cache (a block blob upload is all or nothing), so
      // only the segments that were in flight are sent again.
      const resumeFrom = Math.max(input.fromIndex, deps.resumeCursor?.nextIndex ?? 0);
      if (deps.resumeCursor) present = await uploadedIndices(cache, point, diskId, resumeFrom, sliceEnd);
      cursor = resumeFrom;
      wanted = segments.slice(resumeFrom, sliceEnd).filter((s) => !present.has(s.index));
      resumed = Math.min(sliceEnd, segments.length) - input.fromIndex - wanted.length;
    }
    const summary = await uploadSegments(deps, reader, point, diskId, wanted, cursor, present);
    summary.resumedSegments = resumed;
    const nextIndex = input.onlySegments
      ? segments.length
      : Math.min(segments.length, input.fromIndex + input.maxSegments);
    const done = nextIndex >= segments.length;
    if (done) {
      // Last: the manifest tells the applier the cycle's segments are all there.
      await writeCycleManifest(deps.blobService, {
        machine: point.machine,
        diskId,
        cycle: point.cycle,
        segments: segments.length,
        sizeBytes: disk.sizeBytes,
      });
    }
    return {
      nextIndex,
      done,
      segmentsTotal: segments.length,
      bytesTotal,
      bytesDone: segments.slice(0, nextIndex).reduce((a, s) => a + s.rawBytes, 0),
      summary,
    };
  } catch (err) {
    if (!(err instanceof FrozenPointLostError)) throw err;
    // Lost while its changes were listed or read (the machine crashed, the agent restarted): the
    // next attempt would only find it gone again, 20 times over minutes with no alert.
    if (!(err instanceof FrozenPointGivenUpError)) throw pointLost(point, disk, err);
    // The machine's writes went on; retrying cannot bring the point back. The cycle fails, its
    // changes go with the next one. An agent's point filled the machine's own folder (its message
    // says which and the fix); a QEMU point, this server's state disk, which alerts (state-disk.ts).
    if (disk.agentId)
      throw ApplicationFailure.create({
        type: FAILURE.PointInTimeLost,
        nonRetryable: true,
        message: `point in time ${point.pitId} of ${point.machine} was given up by its agent: ${err.message}`,
      });
    noteGivenUpPoint(point.machine, point.pitId, err.message);
    throw ApplicationFailure.create({
      type: FAILURE.PointInTimeLost,
      nonRetryable: true,
      message: `point in time ${point.pitId} of ${point.machine} was given up at the source, the machine's writes went on: ${err.message}. Free space on the process server's state disk (its state-disk-full alert says how much is left); the next cycle sends these changes`,
    });
  } finally {
    await reader.close();
  }
}

/** Retrying cannot bring a frozen view back: the cycle ends at once; its changes go with the next one. */
function pointLost(point: FrozenPoint, disk: FrozenDisk, err: Error): ApplicationFailure {
  const restarted = disk.agentId ? 'the machine or its agent' : 'the VM or storage daemon';
  return ApplicationFailure.create({
    type: FAILURE.PointInTimeLost,
    nonRetryable: true,
    message: `the frozen point in time ${point.pitId} is gone from the source (did ${restarted} restart?): ${err.message}`,
  });
}

async function uploadSegments(
  deps: TransferDeps,
  reader: FrozenDiskReader,
  point: FrozenPoint,
  diskId: string,
  segments: SegmentPlan[],
  cursorStart: number,
  alreadyUploaded: ReadonlySet<number>,
): Promise<TransferSummary> {
  const cache = deps.blobService.getContainerClient(CONTAINERS.cache);
  const summary: TransferSummary = {
    diskId,
    segments: segments.length,
    rawBytes: 0,
    zeroBytes: 0,
    sentBytes: 0,
    resumedSegments: 0,
    uploadedSegments: 0,
  };
  const uploaded = new Set<number>(alreadyUploaded);
  let watermark = cursorStart;
  let next = 0;

  // The first failure stops every lane (no new read starts); the call returns only once every
  // lane has stopped, so no read outlives the NBD connection and the spool room is all given back.
  let failure: { error: unknown } | undefined;
  // At most the pool's threads plus one segments are read at once. All 8 lanes reading together
  // (the start of a transfer) finished together, and the first upload waited for the slowest read
  // while the link stood idle; so the first segment is read, encoded and up while the others are
  // read. Encodes queue in the pool, which keeps its threads busy.
  const reading = new Semaphore(deps.pipeline.threads + 1);
  async function sendSegment(plan: SegmentPlan): Promise<{ zeroBytes: number; segmentBytes: number }> {
    const data = await reading.run(() => readExtents(reader, plan.extents));
    const encoded = await deps.pipeline.encode({
      machine: point.machine,
      diskId,
      cycle: point.cycle,
      index: plan.index,
      extents: plan.extents,
      data,
    });
    const name = segmentBlobName(point.machine, diskId, point.cycle, plan.index);
    await deps.throttle?.(point.machine, encoded.segment.length);
    await cache.getBlockBlobClient(name).uploadData(encoded.segment);
    return { zeroBytes: encoded.stats.zeroBytes, segmentBytes: encoded.segment.length };
  }

  async function lane(): Promise<void> {
    while (next < segments.length && failure === undefined) {
      if (deps.isCancelled?.()) throw new Error('transfer cancelled');
      const plan = segments[next++] as SegmentPlan;
      // A lane that waited for spool room while another failed stops without reading.
      const sent = await (deps.intake
        ? deps.intake.with(plan.rawBytes, async () => (failure ? undefined : sendSegment(plan)))
        : sendSegment(plan));
      if (!sent) break;
      summary.rawBytes += plan.rawBytes;
      summary.zeroBytes += sent.zeroBytes;
      summary.sentBytes += sent.segmentBytes;
      summary.uploadedSegments += 1;
      uploaded.add(plan.index);
      while (uploaded.has(watermark)) uploaded.delete(watermark++);
      deps.heartbeat({ nextIndex: watermark });
    }
  }

  await Promise.all(
    Array.from({ length: Math.min(deps.uploadConcurrency, segments.length) }, () =>
      lane().catch((error: unknown) => {
        failure ??= { error };
      }),
    ),
  );
  if (failure) throw failure.error;
  return summary;
}

async function uploadedIndices(
  cache: ContainerClient,
  point: FrozenPoint,
  diskId: string,
  from: number,
  to: number,
): Promise<Set<number>> {
  const present = new Set<number>();
  const prefix = segmentCyclePrefix(point.machine, diskId, point.cycle);
  for await (const blob of cache.listBlobsFlat({ prefix })) {
    const index = Number(/(\d+)\.seg$/.exec(blob.name)?.[1]);
    if (Number.isInteger(index) && index >= from && index < to) present.add(index);
  }
  return present;
}
