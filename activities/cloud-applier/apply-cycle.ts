// Applies one uploaded cycle of one disk to its replica page blob: for each segment, download,
// verify and decode on the block pipeline, then write its data extents (Put Page) and clear its
// zero extents (Put Page clear).
//
// Invariant 4: a segment that fails verification is never written. Segments are downloaded and
// decoded ahead (a bounded window) while earlier ones are written, but writing follows index
// order: segment i starts writing only after segments 0..i-1 decoded cleanly, and not before any
// earlier segment whose range overlaps it has finished. The first failure stops everything: no
// segment starts writing after it, the writes already running finish, and the failing indices
// found by then are reported together in one non-retryable SegmentCorrupt failure.
//
// Re-applying a cycle, whole or from a heartbeated index, writes the same bytes to the same pages
// again: harmless, as long as no later cycle of the disk has been applied in between (the workflow
// applies cycles of a disk strictly in order).
//
// The writes go to the replica page blob by default; the master target (failback) passes its own
// `target` (a primary disk over NBD, with an undo journal) and gets the same verification.
import type { BlobClient, PageBlobClient } from '@azure/storage-blob';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type { ApplySummary } from '../../shared/replication-types';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { DecodeResult } from '../../lib/segments/block-pipeline';
import {
  MAX_SEGMENT_RAW_BYTES,
  SegmentVerificationError,
  segmentBlobName,
} from '../../lib/segments/segment-format';
import {
  CycleManifestError,
  cycleManifestBlobName,
  readCycleManifest,
} from '../../lib/segments/cycle-layout';
import type { CycleManifest, CycleRef } from '../../lib/segments/cycle-layout';
import type { ApplierDeps } from './replica-disk';
import { MAX_PAGE_WRITE_BYTES, ensureReplicaDisk, isNotFound, replicaBlobClient } from './replica-disk';

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

export interface ApplyCycleInput {
  machine: string;
  diskId: string;
  cycle: number;
  /** First segment to apply (resume after a crash from the last reported progress); default 0. */
  startIndex?: number;
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
  /** Where verified segments are written; default: the disk's replica page blob. */
  target?: ApplyTarget;
}

/** Where an apply writes. Only segments that passed every check ever reach it. */
export interface ApplyTarget {
  sizeBytes: number;
  /** Runs before a verified segment's first write (the master target journals what it overwrites). */
  beforeWrite?(decoded: DecodeResult, index: number): Promise<void>;
  /** Writes data (at most 4 MiB per call). */
  write(offset: number, body: Buffer, signal: AbortSignal | undefined): Promise<void>;
  /** Makes `length` bytes at `offset` read as zeros. */
  clear(offset: number, length: number, signal: AbortSignal | undefined): Promise<void>;
  /** After the last segment: make the writes durable. */
  flush?(): Promise<void>;
}

function pageBlobTarget(pageBlob: PageBlobClient, sizeBytes: number): ApplyTarget {
  return {
    sizeBytes,
    write: async (offset, body, signal) => {
      await pageBlob.uploadPages(body, offset, body.length, { abortSignal: signal });
    },
    clear: async (offset, length, signal) => {
      await pageBlob.clearPages(offset, length, { abortSignal: signal });
    },
  };
}

// A segment blob is at most the 12-byte prefix, a header of at most 1 MiB, a payload of at most
// 4 MiB and the 16-byte tag; anything bigger is refused before it is read into memory.
const MAX_SEGMENT_BLOB_BYTES = MAX_SEGMENT_RAW_BYTES + 1024 * 1024 + 1024;

type Fetched =
  | { kind: 'ok'; decoded: DecodeResult }
  | { kind: 'corrupt'; reason: string }
  | { kind: 'error'; error: unknown };

interface Span {
  start: number;
  end: number;
}

export async function applyCycle(
  deps: Pick<ApplierDeps, 'blobService' | 'pipeline'>,
  input: ApplyCycleInput,
): Promise<ApplySummary> {
  const { machine, diskId, cycle } = input;
  const manifest = await readManifestOrFail(deps, { machine, diskId, cycle });
  const total = manifest.segments;
  const start = input.startIndex ?? 0;
  if (!Number.isSafeInteger(start) || start < 0 || start > total) {
    throw ApplicationFailure.nonRetryable(
      `startIndex ${start} is outside cycle ${cycle} of ${machine}/${diskId}, which has ${total} segments`,
      FAILURE.InvalidApplyRequest,
    );
  }

  let target = input.target;
  if (!target) {
    const replica = await ensureReplicaDisk(deps, { machine, diskId, sizeBytes: manifest.sizeBytes });
    target = pageBlobTarget(replicaBlobClient(deps.blobService, replica.blob), replica.sizeBytes);
  }
  const sink = target;
  const cache = deps.blobService.getContainerClient(CONTAINERS.cache);
  const window = Math.max(1, input.segmentsInFlight ?? 4);
  const requests = new Semaphore(Math.max(1, input.requestsInFlight ?? 8));
  const summary: ApplySummary = { diskId, segments: 0, appliedBytes: 0, clearedBytes: 0 };

  // Download, size check, decode (verification) and header check of one segment. Never rejects.
  const fetchSegment = async (index: number): Promise<Fetched> => {
    const name = segmentBlobName(machine, diskId, cycle, index);
    let bytes: Buffer;
    try {
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
    if (h.machineId !== machine || h.diskId !== diskId || h.cycle !== cycle || h.index !== index) {
      return {
        kind: 'corrupt',
        reason:
          `misplaced: ${name} holds segment ${h.index} of ${h.machineId}/${h.diskId} cycle ${h.cycle}, ` +
          `not segment ${index} of ${machine}/${diskId} cycle ${cycle}`,
      };
    }
    const last = h.extents[h.extents.length - 1];
    if (last !== undefined && last.offset + last.length > sink.sizeBytes) {
      return {
        kind: 'corrupt',
        reason: `out-of-range: extents end at ${last.offset + last.length}, the disk has ${manifest.sizeBytes} bytes`,
      };
    }
    return { kind: 'ok', decoded };
  };

  const fetched = new Map<number, Promise<Fetched>>();
  const writing = new Map<number, { span: Span | undefined; done: Promise<void> }>();
  const written = new Set<number>();
  const corrupt = new Map<number, string>();
  let fatal: { error: unknown } | undefined;
  let nextFetch = start;
  let watermark = start; // every segment below it is fully written
  const stopped = (): boolean => corrupt.size > 0 || fatal !== undefined;

  const fill = (): void => {
    while (!stopped() && nextFetch < total && nextFetch - watermark < window) {
      fetched.set(nextFetch, fetchSegment(nextFetch));
      nextFetch++;
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

  for (let index = start; index < total && !stopped(); index++) {
    if (input.signal?.aborted) {
      fatal ??= { error: input.signal.reason ?? new Error('apply aborted') };
      break;
    }
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
    const outcome = await fetched.get(index)!;
    fetched.delete(index);
    if (outcome.kind === 'corrupt') {
      corrupt.set(index, outcome.reason);
      break;
    }
    if (outcome.kind === 'error') {
      fatal ??= { error: outcome.error };
      break;
    }
    if (stopped()) break;
    const span = spanOf(outcome.decoded);
    // Segments of a cycle normally cover disjoint ranges; if one overlaps an earlier one still
    // being written, it waits, so the later segment's bytes are the ones that stay.
    for (;;) {
      const blockers = [...writing.values()].filter((w) => overlaps(w.span, span));
      if (blockers.length === 0) break;
      await Promise.race(blockers.map((w) => w.done));
    }
    if (stopped()) break;
    const decoded = outcome.decoded;
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
  }

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
        (watermark > 0
          ? `segments below ${watermark} were applied, so the replica holds part of this cycle: resync the disk.`
          : 'nothing of this cycle was applied: resync the disk.'),
      SEGMENT_CORRUPT,
      details,
    );
  }
  if (fatal !== undefined) throw fatal.error;
  await sink.flush?.();
  return summary;
}

async function readManifestOrFail(
  deps: Pick<ApplierDeps, 'blobService'>,
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

async function downloadSegment(
  blob: BlobClient,
  signal: AbortSignal | undefined,
): Promise<{ kind: 'ok'; bytes: Buffer } | { kind: 'corrupt'; reason: string }> {
  let response;
  try {
    response = await blob.download(0, undefined, { abortSignal: signal, maxRetryRequests: 5 });
  } catch (err) {
    if (isNotFound(err))
      return {
        kind: 'corrupt',
        reason: `missing: ${blob.name} does not exist although the manifest lists it`,
      };
    throw err;
  }
  const length = response.contentLength ?? 0;
  const stream = response.readableStreamBody;
  if (length > MAX_SEGMENT_BLOB_BYTES) {
    stream?.resume();
    return {
      kind: 'corrupt',
      reason: `oversized: ${blob.name} has ${length} bytes, a segment has at most ${MAX_SEGMENT_BLOB_BYTES}`,
    };
  }
  // A buffer owning its whole ArrayBuffer, so the pipeline can move it to a worker without a copy.
  const bytes = Buffer.allocUnsafeSlow(length);
  let at = 0;
  if (stream) {
    for await (const chunk of stream) {
      const piece = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      if (at + piece.length > length)
        throw new Error(`${blob.name}: received more than the ${length} bytes announced`);
      at += piece.copy(bytes, at);
    }
  }
  // A short read is a transfer problem, not a bad segment: fail retryably rather than call it corrupt.
  if (at !== length) throw new Error(`${blob.name}: received ${at} of ${length} bytes`);
  return { kind: 'ok', bytes };
}

async function writeSegment(
  blob: ApplyTarget,
  { header, data }: DecodeResult,
  requests: Semaphore,
  signal: AbortSignal | undefined,
  summary: ApplySummary,
): Promise<void> {
  const calls: Promise<void>[] = [];
  let at = 0;
  for (const extent of header.extents) {
    if (extent.kind === 'zero') {
      calls.push(
        requests
          .run(() => blob.clear(extent.offset, extent.length, signal))
          .then(() => {
            summary.clearedBytes += extent.length;
          }),
      );
      continue;
    }
    for (let done = 0; done < extent.length; done += MAX_PAGE_WRITE_BYTES) {
      const count = Math.min(MAX_PAGE_WRITE_BYTES, extent.length - done);
      const body = data.subarray(at + done, at + done + count);
      const offset = extent.offset + done;
      calls.push(
        requests
          .run(() => blob.write(offset, body, signal))
          .then(() => {
            summary.appliedBytes += count;
          }),
      );
    }
    at += extent.length;
  }
  if (at !== data.length)
    throw new Error(`segment ${header.index}: ${data.length} data bytes for extents of ${at}`);
  // allSettled first: no request of this segment may still be running when its failure is reported.
  const results = await Promise.allSettled(calls);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

function spanOf({ header }: DecodeResult): Span | undefined {
  const first = header.extents[0];
  const last = header.extents[header.extents.length - 1];
  return first && last ? { start: first.offset, end: last.offset + last.length } : undefined;
}

function overlaps(a: Span | undefined, b: Span | undefined): boolean {
  return a !== undefined && b !== undefined && a.start < b.end && b.start < a.end;
}

/** Counts requests in flight; FIFO. */
class Semaphore {
  #free: number;
  readonly #waiting: (() => void)[] = [];
  constructor(size: number) {
    this.#free = size;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}
