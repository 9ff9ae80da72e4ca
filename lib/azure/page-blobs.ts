// Page blobs and blob names, the helpers every role that touches storage shares: page-range
// listing (with the SDK's inclusive-end quirk handled in one place), deleting a folder of blobs,
// bounded concurrency and the id check of every name part.
import type { BlobRequestConditions, ContainerClient, PageBlobClient } from '@azure/storage-blob';
import { RestError } from '@azure/storage-blob';
import type { Extent } from '../disk/extents';

/** Page blobs are addressed in 512-byte pages. */
export const PAGE_BYTES = 512;
/** The most one Put Page (uploadPages) call may carry on Azure. */
export const MAX_PAGE_WRITE_BYTES = 4 * 1024 * 1024;
/** Get Page Ranges is asked about this much of a blob at a time: large fragmented blobs time out otherwise. */
const PAGE_RANGE_WINDOW_BYTES = 1024 * 1024 * 1024;
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function roundUpToPage(bytes: number): number {
  return Math.ceil(bytes / PAGE_BYTES) * PAGE_BYTES;
}

/** Deletes every blob under `prefix` with its snapshots; returns the names deleted, sorted. */
export async function deleteBlobsUnder(container: ContainerClient, prefix: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const item of container.listBlobsFlat({ prefix })) names.push(item.name);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
  const deleted: string[] = [];
  await forEachLimited(names, 8, async (name) => {
    const res = await container.getBlobClient(name).deleteIfExists({ deleteSnapshots: 'include' });
    if (res.succeeded) deleted.push(name);
  });
  return deleted.sort();
}

export interface ListPagesOptions {
  /** E.g. `{ ifMatch: etag }`, so a blob changed while being read fails with 412 instead. */
  conditions?: BlobRequestConditions;
  abortSignal?: AbortSignal;
}

/**
 * The ranges of a page blob (or snapshot) that hold pages, below `sizeBytes`: ascending, merged,
 * 512-aligned, end exclusive. Everything else reads as zeros. Uses Get Page Ranges window by
 * window; never the diff API (Azurite ignores its previous-snapshot argument).
 */
export async function listPages(
  client: PageBlobClient,
  sizeBytes: number,
  options: ListPagesOptions = {},
): Promise<Extent[]> {
  const out: Extent[] = [];
  const limit = roundUpToPage(sizeBytes);
  for (let windowStart = 0; windowStart < limit; windowStart += PAGE_RANGE_WINDOW_BYTES) {
    const windowEnd = Math.min(limit, windowStart + PAGE_RANGE_WINDOW_BYTES);
    const res = await client.getPageRanges(windowStart, windowEnd - windowStart, {
      conditions: options.conditions,
      abortSignal: options.abortSignal,
    });
    for (const range of res.pageRange ?? []) {
      // The SDK reports count = end - start with the service's INCLUSIVE end, so a 4096-byte page
      // range comes back as count 4095. Accept a corrected SDK (count a multiple of 512) too.
      const count = range.count ?? 0;
      const length = (count + 1) % PAGE_BYTES === 0 ? count + 1 : count;
      // Azurite clips ranges to the window it was asked about; clip ourselves in case Azure does not.
      const start = Math.max(windowStart, Math.floor(range.offset / PAGE_BYTES) * PAGE_BYTES);
      const end = Math.min(windowEnd, roundUpToPage(range.offset + length));
      if (end <= start) continue;
      const last = out[out.length - 1];
      if (last !== undefined && start <= last.offset + last.length) {
        last.length = Math.max(last.length, end - last.offset);
      } else {
        out.push({ offset: start, length: end - start });
      }
    }
  }
  return out;
}

/**
 * Runs `fn` on every item, at most `limit` at a time, in order of items. After the first failure
 * no new call starts; the calls already running are awaited, then the first error is thrown.
 */
export async function forEachLimited<T>(
  items: Iterable<T>,
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failed = false;
  let firstError: unknown;
  const lane = async (): Promise<void> => {
    for (let next = iterator.next(); !failed && next.done !== true; next = iterator.next()) {
      try {
        await fn(next.value);
      } catch (err) {
        if (!failed) firstError = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, lane));
  if (failed) throw firstError;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof RestError && err.statusCode === 404;
}

export function assertId(what: string, value: string): void {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) {
    throw new RangeError(
      `${what} ${JSON.stringify(value)} must match ${ID_PATTERN} (it becomes part of a blob name)`,
    );
  }
}
