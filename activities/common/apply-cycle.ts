// Applies one uploaded cycle of one disk to its replica page blob: for each segment, download,
// verify and decode on the block pipeline, then write its data extents (Put Page) and clear its
// zero extents (Put Page clear).
//
// Invariant 4: a segment that fails verification is never written. Segments are downloaded and
// decoded ahead (a bounded window) while earlier ones are written, but writing follows index
// order: segment i starts writing only after segments 0..i-1 decoded cleanly, and not before any
// earlier segment whose range overlaps it has finished (following an upload, a verified segment
// whose range meets no other write's may go ahead: writeAhead). The first failure stops
// everything: no segment starts writing after it, the writes already running finish, and the
// failing indices found by then are reported together in one non-retryable SegmentCorrupt failure.
//
// Re-applying a cycle, whole or from a heartbeated index, writes the same bytes to the same pages
// again: harmless, as long as no later cycle of the disk has been applied in between (the workflow
// applies cycles of a disk strictly in order).
//
// The cloud applier writes to the replica page blob (cloud-applier/apply-replica.ts); the master
// target (failback) passes its own `target` (a primary disk over NBD, with an undo journal) and gets
// the same verification. The Temporal-free steps are in lib/segments/segment-apply.ts.
import { setMaxListeners } from 'node:events';
import { FAILURE } from '../../shared/failures';
import { ApplicationFailure } from '@temporalio/common';
import type { ApplySummary } from '../../shared/replication-types';
import { CONTAINERS, type BlobStorage } from '../../lib/azure/blob-client';
import type { DecodeResult } from '../../lib/segments/block-pipeline';
import { SegmentVerificationError } from '../../lib/segments/segment-header';
import { segmentBlobName } from '../../lib/segments/cache-layout';
import {
  CycleManifestError,
  cycleManifestBlobName,
  readCycleManifest,
} from '../../lib/segments/cycle-layout';
import type { CycleManifest, CycleRef } from '../../lib/segments/cycle-layout';
import type { BlockPipeline } from '../../lib/segments/block-pipeline';
import { UploadFollower, UploadStalledError, type FollowOptions } from '../../lib/segments/follow-upload';
import { Semaphore } from '../../lib/segments/semaphore';
import {
  downloadSegment,
  overlaps,
  spanOf,
  writeSegment,
  type ApplyTarget,
  type Fetched,
  type Span,
} from '../../lib/segments/segment-apply';

export type { ApplyTarget } from '../../lib/segments/segment-apply';

/** What an apply needs of its worker. */
export interface ApplyDeps {
  blobService: BlobStorage;
  pipeline: BlockPipeline;
}

/** Failure type: a segment failed verification (details: SegmentCorruptDetails). Non-retryable. */
export const SEGMENT_CORRUPT = FAILURE.SegmentCorrupt;
/** Failure type: the cycle's manifest is not there yet, the upload is not finished. Retryable. */
export const CYCLE_NOT_UPLOADED = FAILURE.CycleNotUploaded;
/** Failure type: the manifest is malformed or belongs to another cycle. Non-retryable. */
export const MANIFEST_INVALID = FAILURE.ManifestInvalid;

/** details[0] of a SegmentCorrupt failure; reasons[i] explains indices[i]. */
export interface SegmentCorruptDetails {
  indices: number[];
  /** `<code>: <detail>`, code one of SegmentRejectReason or missing, oversized, misplaced, out-of-range. */
  reasons: string[];
}

/** What the apply activity takes besides the cycle: whether it follows an upload still running. */
export type AppliedPart = Pick<ApplyCycleInput, 'follow' | 'sizeBytes'>;

export interface ApplyCycleInput {
  machine: string;
  diskId: string;
  cycle: number;
  /** First segment to apply (resume after a crash from the last reported progress); default 0. */
  startIndex?: number;
  /**
   * Start while the cycle is still being uploaded (the workflow starts it with the transfer): wait
   * for each segment, end when the manifest says there are no more, and fail with
   * CycleNotUploaded when the upload stops for `idleMs`. Needs `sizeBytes` to open the replica.
   */
  follow?: boolean | FollowOptions;
  /** The disk's size at the freeze, for a `follow` apply (otherwise the manifest's). */
  sizeBytes?: number;
  /**
   * Called with n each time every segment below n is fully written (never for a segment that is
   * only decoded); heartbeat it and pass it back as startIndex on retry.
   */
  onProgress?: (nextIndex: number) => void;
  /** Segments downloaded, decoded or being written at once; default 4. */
  segmentsInFlight?: number;
  /** Put Page requests at once across all segments; default 8. */
  requestsInFlight?: number;
  /** Stops the apply (no new segment starts); the call rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Where verified segments are written, or how to open it once the manifest (the disk's size at
   * the freeze) is read: the cloud applier opens the replica page blob, the master target a disk.
   */
  target: ApplyTarget | ((manifest: CycleManifest) => Promise<ApplyTarget>);
}

export async function applyCycle(deps: ApplyDeps, input: ApplyCycleInput): Promise<ApplySummary> {
  const { machine, diskId, cycle } = input;
  const ref = { machine, diskId, cycle };
  const follower = input.follow ? follow(deps, input) : undefined;
  // A follower finds the manifest itself: one already there may be a leftover (follow-upload.ts).
  const manifest = follower ? undefined : await readManifestOrFail(deps, ref);
  // A followed cycle's end is unknown (Infinity) until its manifest is written.
  const total = (): number => follower?.total ?? manifest?.segments ?? 0;
  const sizeBytes = manifest?.sizeBytes ?? (input.sizeBytes as number);
  const start = input.startIndex ?? 0;
  if (!Number.isSafeInteger(start) || start < 0 || start > total()) {
    throw ApplicationFailure.nonRetryable(
      `startIndex ${start} is outside cycle ${cycle} of ${machine}/${diskId}, which has ${total()} segments`,
      FAILURE.InvalidApplyRequest,
    );
  }

  const sink =
    typeof input.target === 'function'
      ? await input.target(manifest ?? { ...ref, segments: 0, sizeBytes })
      : input.target;
  const cache = deps.blobService.getContainerClient(CONTAINERS.cache);
  // Segments fetched (waited for, downloaded, decoded) or being written at once: the apply's memory
  // bound. A followed upload lands out of order: the process server's 8 uploads share the link,
  // and one can end seconds after the segments behind it, so a follower holds 16.
  const window = Math.max(1, input.segmentsInFlight ?? (follower ? 16 : 4));
  const requests = new Semaphore(Math.max(1, input.requestsInFlight ?? 8));
  const summary: ApplySummary = { diskId, segments: 0, appliedBytes: 0, clearedBytes: 0 };

  // (Following an upload: first wait for the segment, or learn that the cycle ends before it; the
  // waits still running when the apply stops end with it.)
  const stopWaiting = new AbortController();
  const waiting = input.signal ? AbortSignal.any([input.signal, stopWaiting.signal]) : stopWaiting.signal;
  // Every segment waited for listens to it (and a download or two besides): not a leak.
  setMaxListeners(4 * window, waiting);
  // Download, size check, decode (verification) and header check of one segment. Never rejects.
  const fetchSegment = async (index: number): Promise<Fetched | { kind: 'end' }> => {
    const name = segmentBlobName(machine, diskId, cycle, index);
    let bytes: Buffer;
    try {
      if (follower && (await follower.waitFor(index, waiting)) === 'end') return { kind: 'end' };
      const got = await downloadSegment(cache.getBlobClient(name), input.signal);
      if (got.kind !== 'ok') return got;
      bytes = got.bytes;
    } catch (error) {
      return { kind: 'error', error };
    }
    let decoded: DecodeResult;
    try {
      decoded = await deps.pipeline.decode(bytes);
    } catch (error) {
      if (error instanceof SegmentVerificationError)
        return { kind: 'corrupt', reason: `${error.reason}: ${error.detail}` };
      return { kind: 'error', error };
    }
    const h = decoded.header;
    if (h.machine !== machine || h.diskId !== diskId || h.cycle !== cycle || h.index !== index) {
      return {
        kind: 'corrupt',
        reason:
          `misplaced: ${name} holds segment ${h.index} of ${h.machine}/${h.diskId} cycle ${h.cycle}, ` +
          `not segment ${index} of ${machine}/${diskId} cycle ${cycle}`,
      };
    }
    const last = h.extents[h.extents.length - 1];
    if (last !== undefined && last.offset + last.length > sink.sizeBytes) {
      return {
        kind: 'corrupt',
        reason: `out-of-range: extents end at ${last.offset + last.length}, the disk has ${sink.sizeBytes} bytes`,
      };
    }
    return { kind: 'ok', decoded };
  };

  const fetched = new Map<number, Promise<Fetched | { kind: 'end' }>>();
  const writing = new Map<number, { span: Span | undefined; done: Promise<void> }>();
  const written = new Set<number>();
  const corrupt = new Map<number, string>();
  let fatal: { error: unknown } | undefined;
  let nextFetch = start;
  let watermark = start; // every segment below it is fully written
  const stopped = (): boolean => corrupt.size > 0 || fatal !== undefined;

  // Counted by what is held, not by distance from the watermark: behind a late segment, the
  // segments written ahead of it leave the window, so the follow goes on to the end of the upload.
  // A follower waits for at most 8 segments not yet there (the process server's uploads in
  // flight): each one waited for is a request to storage every poll.
  const waitingAtMost = follower ? Math.min(window, 8) : window;
  let unsettled = 0;
  const fill = (): void => {
    while (
      !stopped() &&
      nextFetch < total() &&
      fetched.size + writing.size < window &&
      unsettled < waitingAtMost
    ) {
      const index = nextFetch;
      const pending = fetchSegment(index);
      fetched.set(index, pending);
      unsettled++;
      void pending.then((outcome) => {
        unsettled--;
        if (follower) settled.set(index, outcome);
      });
      nextFetch++;
    }
  };
  const startWrite = (index: number, decoded: DecodeResult, span: Span | undefined): void => {
    const done = (sink.beforeWrite ? sink.beforeWrite(decoded, index) : Promise.resolve())
      .then(() => writeSegment(sink, decoded, requests, input.signal, summary))
      .then(
        () => {
          writing.delete(index);
          summary.segments++;
          segmentWritten(index);
        },
        (error: unknown) => {
          writing.delete(index);
          fatal ??= { error };
        },
      );
    writing.set(index, { span, done });
  };
  // Following an upload, a segment that lands late would hold back every write behind it, and
  // they would all land at the end, after the last upload. So a verified segment past the one
  // awaited is written at once when its range meets no write started (pairwise disjoint: the order
  // among them does not matter). Should the awaited one then overlap a segment written ahead, the
  // follow fails like a corrupt segment, and the apply after the transfer does the cycle in order.
  const settled = new Map<number, Fetched | { kind: 'end' }>();
  const ahead = new Map<number, Span | undefined>();
  const writeAhead = (awaited: number): void => {
    for (const [index, outcome] of settled) {
      if (index <= awaited || ahead.has(index) || outcome.kind !== 'ok' || stopped()) continue;
      const span = spanOf(outcome.decoded);
      const others = [...[...writing.values()].map((w) => w.span), ...ahead.values()];
      if (others.some((other) => overlaps(other, span))) continue;
      ahead.set(index, span);
      settled.delete(index);
      fetched.delete(index);
      startWrite(index, outcome.decoded, span);
    }
  };
  const segmentWritten = (index: number): void => {
    written.add(index);
    const before = watermark;
    while (written.delete(watermark)) watermark++;
    if (watermark !== before && input.onProgress) {
      try {
        input.onProgress(watermark);
      } catch (error) {
        fatal ??= { error };
      }
    }
    fill();
  };

  for (let index = start; index < total() && !stopped(); index++) {
    if (input.signal?.aborted) {
      fatal ??= { error: input.signal.reason ?? new Error('apply aborted') };
      break;
    }
    if (ahead.has(index)) continue;
    fill();
    // With a full window, wait for a write to finish (which frees a slot and fetches more).
    while (!fetched.has(index) && !stopped()) {
      if (writing.size === 0) {
        fatal ??= { error: new Error(`internal: segment ${index} neither fetched nor waiting for a write`) };
        break;
      }
      await Promise.race([...writing.values()].map((w) => w.done));
      fill();
    }
    if (stopped()) break;
    while (follower && !settled.has(index) && !stopped()) {
      writeAhead(index);
      const behind = [...fetched]
        .filter(([i]) => i > index && !settled.has(i) && !ahead.has(i))
        .map(([, f]) => f);
      await Promise.race([fetched.get(index)!, ...behind, ...[...writing.values()].map((w) => w.done)]);
      fill();
    }
    if (stopped()) break;
    const outcome = await fetched.get(index)!;
    fetched.delete(index);
    settled.delete(index);
    if (outcome.kind === 'corrupt') {
      corrupt.set(index, outcome.reason);
      break;
    }
    if (outcome.kind === 'error') {
      fatal ??= { error: outcome.error };
      break;
    }
    if (outcome.kind === 'end') break;
    if (stopped()) break;
    const span = spanOf(outcome.decoded);
    const overtaken = [...ahead].find(([i, s]) => i > index && overlaps(s, span));
    if (overtaken) {
      corrupt.set(
        index,
        `overlap: its range meets segment ${overtaken[0]}'s, written before it while following the upload`,
      );
      break;
    }
    // Segments of a cycle normally cover disjoint ranges; if one overlaps an earlier one still
    // being written, it waits, so the later segment's bytes are the ones that stay.
    for (;;) {
      const blockers = [...writing.values()].filter((w) => overlaps(w.span, span));
      if (blockers.length === 0) break;
      await Promise.race(blockers.map((w) => w.done));
    }
    if (stopped()) break;
    startWrite(index, outcome.decoded, span);
  }

  stopWaiting.abort();
  // Let running writes finish, so the blob is in a known state when we return or throw; then look
  // at the segments fetched ahead, which are never written now, to report every bad one seen.
  await Promise.all([...writing.values()].map((w) => w.done));
  for (const [index, pending] of fetched) {
    const outcome = await pending;
    if (outcome.kind === 'corrupt') corrupt.set(index, outcome.reason);
  }
  if (corrupt.size > 0) {
    const indices = [...corrupt.keys()].sort((a, b) => a - b);
    const details: SegmentCorruptDetails = { indices, reasons: indices.map((i) => corrupt.get(i)!) };
    throw ApplicationFailure.nonRetryable(
      `cycle ${cycle} of ${machine}/${diskId}: segment${indices.length > 1 ? 's' : ''} ${indices.join(', ')} ` +
        `failed verification and ${indices.length > 1 ? 'were' : 'was'} not applied (${details.reasons.join('; ')}); ` +
        (watermark > 0 || ahead.size > 0
          ? `segments below ${watermark}${ahead.size ? ` and ${ahead.size} written ahead of it` : ''} were applied, so the replica holds part of this cycle: resync the disk.`
          : 'nothing of this cycle was applied: resync the disk.'),
      SEGMENT_CORRUPT,
      details,
    );
  }
  if (fatal?.error instanceof UploadStalledError)
    throw ApplicationFailure.nonRetryable(fatal.error.message, CYCLE_NOT_UPLOADED);
  if (fatal !== undefined) throw fatal.error;
  await sink.flush?.();
  return summary;
}

/** The follower of a cycle still uploading; its stall is CycleNotUploaded, not retried. */
function follow(deps: Pick<ApplyDeps, 'blobService'>, input: ApplyCycleInput): UploadFollower {
  const { machine, diskId, cycle, sizeBytes } = input;
  if (sizeBytes === undefined || !Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
    throw ApplicationFailure.nonRetryable(
      `an apply that follows the upload of cycle ${cycle} of ${machine}/${diskId} needs the disk's sizeBytes ` +
        `as a whole number (got ${sizeBytes})`,
      FAILURE.InvalidApplyRequest,
    );
  }
  return new UploadFollower(
    deps.blobService,
    { machine, diskId, cycle },
    typeof input.follow === 'object' ? input.follow : {},
  );
}

async function readManifestOrFail(
  deps: Pick<ApplyDeps, 'blobService'>,
  ref: CycleRef,
): Promise<CycleManifest> {
  let manifest: CycleManifest | undefined;
  try {
    manifest = await readCycleManifest(deps.blobService, ref);
  } catch (err) {
    if (err instanceof CycleManifestError)
      throw ApplicationFailure.nonRetryable(err.message, MANIFEST_INVALID);
    throw err;
  }
  if (manifest === undefined) {
    throw ApplicationFailure.retryable(
      `cycle ${ref.cycle} of ${ref.machine}/${ref.diskId} is not uploaded yet: its manifest ` +
        `${CONTAINERS.cache}/${cycleManifestBlobName(ref.machine, ref.diskId, ref.cycle)} is missing ` +
        '(the process server writes it after the last segment)',
      CYCLE_NOT_UPLOADED,
    );
  }
  return manifest;
}
