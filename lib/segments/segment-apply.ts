// The Temporal-free steps of applying a cycle (activities/common/apply-cycle.ts runs them):
// where verified segments are written (ApplyTarget, the page-blob one), downloading one segment
// with its size checks, writing one decoded segment with bounded requests, and the ranges a
// segment covers (so overlapping segments are written in order).
import type { BlobClient, PageBlobClient } from '@azure/storage-blob';
import type { ApplySummary } from '../../shared/replication-types';
import { MAX_PAGE_WRITE_BYTES, isNotFound } from '../azure/page-blobs';
import type { DecodeResult } from './block-pipeline';
import { MAX_SEGMENT_RAW_BYTES } from './segment-header';
import type { Semaphore } from './semaphore';

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

export function pageBlobTarget(pageBlob: PageBlobClient, sizeBytes: number): ApplyTarget {
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
export const MAX_SEGMENT_BLOB_BYTES = MAX_SEGMENT_RAW_BYTES + 1024 * 1024 + 1024;

export type Fetched =
  | { kind: 'ok'; decoded: DecodeResult }
  | { kind: 'corrupt'; reason: string }
  | { kind: 'error'; error: unknown };

export interface Span {
  start: number;
  end: number;
}

export async function downloadSegment(
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

export async function writeSegment(
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

export function spanOf({ header }: DecodeResult): Span | undefined {
  const first = header.extents[0];
  const last = header.extents[header.extents.length - 1];
  return first && last ? { start: first.offset, end: last.offset + last.length } : undefined;
}

export function overlaps(a: Span | undefined, b: Span | undefined): boolean {
  return a !== undefined && b !== undefined && a.start < b.end && b.start < a.end;
}
