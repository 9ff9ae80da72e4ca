// The block pipeline of the process server (and of the appliers, for decode): zero detection,
// hashing, zstd and AES-256-GCM run on a Piscina pool so the main thread keeps reading from NBD and
// uploading. One pool per process: several pools would fight for the same cores and multiply
// the memory bound.
//
// Buffers are moved, not copied: `encode` transfers `job.data` to a worker thread and `decode`
// transfers `segment`, so after the call the caller's Buffer is detached (length 0) and must not
// be reused. A Buffer that views only part of its ArrayBuffer (a slice of Node's Buffer pool, or
// of a larger read buffer) is copied instead, because transferring it would detach its neighbours.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Piscina } from 'piscina';
import { countRejection } from '../observability/rejections';
import { Keyring } from './keys';
import type { EncryptionKey } from './keys';
import {
  DEFAULT_COMPRESSION_LEVEL,
  MAX_SEGMENT_RAW_BYTES,
  peekKeyId,
  SegmentVerificationError,
} from './segment-format';
import type { SegmentHeader, SegmentInput, SegmentStats } from './segment-format';
import { transferableView } from './pipeline-worker';
import type { DecodeReply, DecodeTask, EncodeReply, EncodeTask, PipelineWorkerData } from './pipeline-worker';

export interface BlockPipelineOptions {
  /** Worker threads, all started up front. */
  threads: number;
  /**
   * Bound on raw bytes handed to the pool and not yet returned; `encode` waits while admitting a
   * job would exceed it. At least one segment (4 MiB), so every valid job fits.
   */
  maxBytesInFlight: number;
  /** Key that encrypts new segments; needed by `encode`. */
  key?: EncryptionKey;
  /** Keys `decode` may need (old keys after a rotation); `key` is added to it. */
  keyring?: Keyring;
  compressionLevel?: number;
  /** Worker module; defaults to pipeline-worker next to this file (.js under dist, .ts under tsx). */
  workerFilename?: string;
  /** Called for a worker-thread error not tied to a task (a task's own error rejects its promise). */
  onWorkerError?: (error: Error) => void;
  /**
   * Called before decoding a segment whose key id the pipeline lacks (a key rotated on this host
   * or copied in since the keys were loaded); may call setKeys. The decode then goes ahead.
   */
  onUnknownKey?: (keyId: string) => Promise<void>;
}

/** A segment to encode (the pipeline's compression level applies); its extents are 512-aligned, at most 4 MiB in all. */
export interface EncodeJob extends Omit<SegmentInput, 'compressionLevel'> {
  /** The extents' bytes, concatenated in order. MOVED to the pool: do not use it after the call. */
  data: Uint8Array;
}

export interface EncodeResult {
  segment: Buffer;
  header: SegmentHeader;
  stats: SegmentStats;
}

export interface DecodeResult {
  header: SegmentHeader;
  /** Bytes of the 'data' extents of header.extents, concatenated in order. */
  data: Buffer;
}

/** Counters for metrics; totals since the pipeline started. */
export interface BlockPipelineStats {
  threads: number;
  encodeTasks: number;
  decodeTasks: number;
  /** Tasks that ended in an error, rejected segments included. */
  failedTasks: number;
  /** Decodes refused by verification. */
  rejectedSegments: number;
  rawBytesIn: number;
  zeroBytes: number;
  payloadBytes: number;
  segmentBytesOut: number;
  /** rawBytesIn / segmentBytesOut of encodes: 1 means no saving, higher is better. */
  compressionRatio: number;
  bytesInFlight: number;
  peakBytesInFlight: number;
  /** Calls that had to wait for room under maxBytesInFlight. */
  backpressureWaits: number;
  /** Calls waiting right now. */
  waiting: number;
  workerErrors: number;
}

interface Waiter {
  bytes: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

export class BlockPipeline {
  static #current: BlockPipeline | undefined;
  readonly threads: number;
  readonly maxBytesInFlight: number;
  readonly #options: BlockPipelineOptions;
  readonly #filename: string;
  #pool: Piscina;
  #canEncode = false;
  #keyIds = new Set<string>();
  /** Pools replaced by setKeys that still finish their tasks. */
  readonly #closing = new Set<Piscina>();
  readonly #waiters: Waiter[] = [];
  #destroyed = false;
  #bytesInFlight = 0;
  #counters = {
    encodeTasks: 0,
    decodeTasks: 0,
    failedTasks: 0,
    rejectedSegments: 0,
    rawBytesIn: 0,
    zeroBytes: 0,
    payloadBytes: 0,
    segmentBytesOut: 0,
    peakBytesInFlight: 0,
    backpressureWaits: 0,
    workerErrors: 0,
  };

  /** The pipeline of this process, if one is running. */
  static get current(): BlockPipeline | undefined {
    return BlockPipeline.#current;
  }

  constructor(options: BlockPipelineOptions) {
    const running = BlockPipeline.#current;
    if (running !== undefined) {
      throw new Error(
        `a BlockPipeline with ${running.threads} threads already runs in this process; share it ` +
          '(BlockPipeline.current) or destroy() it first: one pool per process keeps CPU and memory bounded',
      );
    }
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new RangeError(`threads must be an integer >= 1, got ${options.threads}`);
    }
    if (!Number.isSafeInteger(options.maxBytesInFlight) || options.maxBytesInFlight < MAX_SEGMENT_RAW_BYTES) {
      throw new RangeError(
        `maxBytesInFlight must be at least ${MAX_SEGMENT_RAW_BYTES} (one segment), got ${options.maxBytesInFlight}`,
      );
    }
    const filename = options.workerFilename ?? defaultWorkerFilename();
    if (!existsSync(filename)) {
      throw new Error(`pipeline worker ${filename} not found; run \`npm run build\` or pass workerFilename`);
    }
    this.threads = options.threads;
    this.maxBytesInFlight = options.maxBytesInFlight;
    this.#options = options;
    this.#filename = filename;
    this.#pool = this.#startPool(options.key, options.keyring);
    BlockPipeline.#current = this;
  }

  /** Ids of the keys decode can use; the encoding key's id first. */
  get keyIds(): string[] {
    return [...this.#keyIds];
  }

  /**
   * Switches keys without a restart (after `osr keys rotate`): tasks from now on run on threads
   * that hold the new keys; tasks already running finish on the old threads, which then stop.
   */
  setKeys(key: EncryptionKey | undefined, keyring: Keyring): void {
    if (this.#destroyed) throw new Error('BlockPipeline destroyed');
    const old = this.#pool;
    this.#pool = this.#startPool(key, keyring);
    this.#closing.add(old);
    void old
      .close()
      .catch(() => undefined)
      .finally(() => this.#closing.delete(old));
  }

  #startPool(key: EncryptionKey | undefined, keys: Keyring | undefined): Piscina {
    const keyring = new Keyring(keys ?? []);
    if (key !== undefined) keyring.add(key);
    if (keyring.size === 0) throw new Error('BlockPipeline needs `key` (to encode) or `keyring` (to decode)');
    // KeyObjects cross to the threads once, when a pool starts; tasks never carry key material.
    const workerData: PipelineWorkerData = {
      encodeKey: key?.keyObject ?? null,
      decodeKeys: [...keyring].map((k) => k.keyObject),
      compressionLevel: this.#options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL,
    };
    const pool = new Piscina({
      filename: this.#filename,
      // Piscina preloads the handler named here when a thread starts; the module has no default
      // export, and looking one up makes Piscina fall back to import(), which fails for .ts under tsx.
      name: 'encode',
      minThreads: this.threads,
      maxThreads: this.threads,
      workerData,
    });
    // Without a listener an 'error' event would crash the process.
    pool.on('error', (error: Error) => {
      this.#counters.workerErrors++;
      this.#options.onWorkerError?.(error);
    });
    this.#canEncode = key !== undefined;
    this.#keyIds = new Set([...(key ? [key.id] : []), ...keyring.ids]);
    return pool;
  }

  /**
   * Encodes one segment on a worker thread. Waits first while the pool holds too many bytes.
   * `job.data` is moved to the worker: the caller's Buffer is unusable after this call.
   */
  async encode(job: EncodeJob): Promise<EncodeResult> {
    if (!this.#canEncode) throw new Error('this BlockPipeline has no encryption key; pass `key` to encode');
    const bytes = checkedJobBytes(job);
    await this.#admit(bytes);
    try {
      const data = transferableView(job.data);
      const task: EncodeTask = {
        machine: job.machine,
        diskId: job.diskId,
        cycle: job.cycle,
        index: job.index,
        extents: job.extents.map(({ offset, length }) => ({ offset, length })),
        data,
      };
      const reply = (await this.#pool.run(task, {
        name: 'encode',
        transferList: [data.buffer as ArrayBuffer],
      })) as EncodeReply;
      const c = this.#counters;
      c.encodeTasks++;
      c.rawBytesIn += reply.stats.rawBytes;
      c.zeroBytes += reply.stats.zeroBytes;
      c.payloadBytes += reply.stats.payloadBytes;
      c.segmentBytesOut += reply.stats.segmentBytes;
      return { segment: toBuffer(reply.segment), header: reply.header, stats: reply.stats };
    } catch (err) {
      this.#counters.failedTasks++;
      throw err;
    } finally {
      this.#release(bytes);
    }
  }

  /**
   * Verifies and decodes one segment on a worker thread; throws SegmentVerificationError, with
   * no data, if it fails any check. `segment` is moved to the worker like encode's data.
   */
  async decode(segment: Uint8Array): Promise<DecodeResult> {
    // Counted at its size, capped at the bound so that a segment slightly larger than 4 MiB
    // (header and tag on incompressible data) is still admitted.
    const bytes = Math.min(segment.byteLength, this.maxBytesInFlight);
    const keyId = peekKeyId(segment);
    if (keyId !== undefined && !this.#keyIds.has(keyId)) await this.#options.onUnknownKey?.(keyId);
    await this.#admit(bytes);
    try {
      const input = transferableView(segment);
      const task: DecodeTask = { segment: input };
      const reply = (await this.#pool.run(task, {
        name: 'decode',
        transferList: [input.buffer as ArrayBuffer],
      })) as DecodeReply;
      this.#counters.decodeTasks++;
      if (!reply.ok) {
        this.#counters.rejectedSegments++;
        countRejection('segment', reply.reason, reply.detail);
        throw new SegmentVerificationError(reply.reason, reply.detail);
      }
      return { header: reply.header, data: toBuffer(reply.data) };
    } catch (err) {
      this.#counters.failedTasks++;
      throw err;
    } finally {
      this.#release(bytes);
    }
  }

  get bytesInFlight(): number {
    return this.#bytesInFlight;
  }

  stats(): BlockPipelineStats {
    const c = this.#counters;
    return {
      threads: this.threads,
      ...c,
      compressionRatio: c.segmentBytesOut === 0 ? 1 : c.rawBytesIn / c.segmentBytesOut,
      bytesInFlight: this.#bytesInFlight,
      waiting: this.#waiters.length,
    };
  }

  /** Stops the threads. Waiting and running calls reject. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (BlockPipeline.#current === this) BlockPipeline.#current = undefined;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new Error('BlockPipeline destroyed'));
    const closing = [...this.#closing].map((pool) => pool.destroy().catch(() => undefined));
    await Promise.all([this.#pool.destroy(), ...closing]);
  }

  // FIFO admission: a large job waiting at the head is not overtaken forever by small ones.
  #admit(bytes: number): Promise<void> {
    if (this.#destroyed) return Promise.reject(new Error('BlockPipeline destroyed'));
    if (this.#waiters.length === 0 && this.#bytesInFlight + bytes <= this.maxBytesInFlight) {
      this.#take(bytes);
      return Promise.resolve();
    }
    this.#counters.backpressureWaits++;
    return new Promise((resolve, reject) => this.#waiters.push({ bytes, resolve, reject }));
  }

  #take(bytes: number): void {
    this.#bytesInFlight += bytes;
    if (this.#bytesInFlight > this.#counters.peakBytesInFlight) {
      this.#counters.peakBytesInFlight = this.#bytesInFlight;
    }
  }

  #release(bytes: number): void {
    this.#bytesInFlight -= bytes;
    for (let head = this.#waiters[0]; head !== undefined; head = this.#waiters[0]) {
      if (this.#bytesInFlight + head.bytes > this.maxBytesInFlight) break;
      this.#waiters.shift();
      this.#take(head.bytes);
      head.resolve();
    }
  }
}

// Checked here, before anything is moved, so a bad job leaves the caller's buffer intact.
function checkedJobBytes(job: EncodeJob): number {
  let covered = 0;
  for (const extent of job.extents) covered += extent.length;
  if (job.data.byteLength !== covered) {
    const detached = job.data.buffer.byteLength === 0 && covered > 0;
    throw new RangeError(
      detached
        ? 'job.data is detached: it was already passed to the pipeline, and a buffer passed in must not be reused'
        : `job.data has ${job.data.byteLength} bytes but the extents cover ${covered}`,
    );
  }
  if (covered > MAX_SEGMENT_RAW_BYTES) {
    throw new RangeError(`job covers ${covered} bytes; a segment holds at most ${MAX_SEGMENT_RAW_BYTES}`);
  }
  return covered;
}

function toBuffer(view: Uint8Array): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

// Same directory and extension as this module: dist/…/pipeline-worker.js when compiled,
// pipeline-worker.ts when run from source under tsx (whose loader the worker threads inherit).
function defaultWorkerFilename(): string {
  return path.join(__dirname, `pipeline-worker${path.extname(__filename)}`);
}
