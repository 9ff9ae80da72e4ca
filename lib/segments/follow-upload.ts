// Following a cycle that is still being uploaded: an apply that starts with the transfer waits for
// each segment to appear in the cache, and learns where the cycle ends from its manifest, which
// the process server writes after the last segment. A segment blob is there whole or not at all
// (one Put Blob), so a segment that exists can be read at once.
//
// A cycle number can have been used before (a machine protected again): a new protection clears
// the machine's cycles from the cache first, and the transfer deletes an old cycle's blobs before
// it writes the cycle's plan, so nothing is trusted before the plan is there, and nothing older
// than the plan (a leftover the transfer will overwrite) counts.
import { setTimeout as sleep } from 'node:timers/promises';
import { RestError, type BlobClient, type ContainerClient } from '@azure/storage-blob';
import { CONTAINERS, type BlobStorage } from '../azure/blob-client';
import { cycleManifestBlobName, cyclePlanBlobName, segmentBlobName } from './cache-layout';
import { readCycleManifest, type CycleManifest, type CycleRef } from './cycle-layout';

/** Neither a new segment nor the manifest for the follower's idle limit: the upload stopped. */
export class UploadStalledError extends Error {
  override readonly name = 'UploadStalledError';
}

export interface FollowOptions {
  /** Give up after this long without a new segment or the manifest; default 120 s. */
  idleMs?: number;
  /** How often to look again for what is not there yet; default 50 ms. */
  pollMs?: number;
}

export class UploadFollower {
  /** The cycle's manifest once it is written: from then on the number of segments is known. */
  #manifest: CycleManifest | undefined;
  #planWritten: Date | undefined;
  #lastNews = Date.now();
  #manifestLook: { at: number; written: Promise<boolean> } | undefined;
  readonly #cache: ContainerClient;
  readonly #idleMs: number;
  readonly #pollMs: number;

  constructor(
    private readonly blobService: BlobStorage,
    private readonly ref: CycleRef,
    options: FollowOptions = {},
  ) {
    this.#cache = blobService.getContainerClient(CONTAINERS.cache);
    this.#idleMs = options.idleMs ?? 120_000;
    this.#pollMs = options.pollMs ?? 50;
  }

  /** Segments in the cycle: unknown (Infinity) until the manifest is written. */
  get total(): number {
    return this.#manifest?.segments ?? Infinity;
  }

  /**
   * Resolves 'there' once segment `index` of this upload can be read (or the manifest says it
   * should be: a segment still missing then is reported by its download), 'end' if the cycle has
   * fewer segments.
   */
  async waitFor(index: number, signal: AbortSignal | undefined): Promise<'there' | 'end'> {
    const { machine, diskId, cycle } = this.ref;
    const segment = this.#cache.getBlobClient(segmentBlobName(machine, diskId, cycle, index));
    for (;;) {
      if (index >= this.total) return 'end';
      if (this.#manifest || (await this.#fresh(segment, signal))) {
        this.#lastNews = Date.now();
        return 'there';
      }
      if (await this.#manifestWritten(signal)) {
        this.#manifest ??= await readCycleManifest(this.blobService, this.ref);
        continue;
      }
      if (Date.now() - this.#lastNews > this.#idleMs) {
        throw new UploadStalledError(
          `cycle ${cycle} of ${machine}/${diskId}: no new segment and no manifest for ${Math.round(this.#idleMs / 1000)} s ` +
            `(waiting for segment ${index}); the apply after the transfer applies it instead`,
        );
      }
      await sleep(this.#pollMs, undefined, { signal });
    }
  }

  /**
   * Whether this upload's manifest is written. Every waiting segment asks the same, so one look per
   * poll interval answers them all: storage sees one request per waiting segment, not two.
   */
  #manifestWritten(signal: AbortSignal | undefined): Promise<boolean> {
    if (!this.#manifestLook || Date.now() - this.#manifestLook.at >= this.#pollMs) {
      const { machine, diskId, cycle } = this.ref;
      const manifest = this.#cache.getBlobClient(cycleManifestBlobName(machine, diskId, cycle));
      this.#manifestLook = { at: Date.now(), written: this.#fresh(manifest, signal) };
    }
    return this.#manifestLook.written;
  }

  /** Whether the blob is there and written by this upload (not older than its plan). */
  async #fresh(blob: BlobClient, signal: AbortSignal | undefined): Promise<boolean> {
    if (!this.#planWritten) {
      const { machine, diskId, cycle } = this.ref;
      this.#planWritten = await this.#written(
        this.#cache.getBlobClient(cyclePlanBlobName(machine, diskId, cycle)),
        signal,
      );
      if (!this.#planWritten) return false;
      this.#lastNews = Date.now();
    }
    const written = await this.#written(blob, signal);
    return written !== undefined && written >= this.#planWritten;
  }

  async #written(blob: BlobClient, signal: AbortSignal | undefined): Promise<Date | undefined> {
    try {
      return (await blob.getProperties({ abortSignal: signal })).lastModified;
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) return undefined;
      throw err;
    }
  }
}
