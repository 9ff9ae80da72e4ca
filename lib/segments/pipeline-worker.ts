// The Piscina worker thread of the block pipeline: encodes and decodes segments off the main
// thread. Keys arrive once, as KeyObjects in workerData, never in task messages. Buffers travel
// by transfer (moved, not copied) in both directions.
import { workerData } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { EncryptionKey, Keyring } from './keys';
import { decodeSegment, encodeSegment, SegmentVerificationError } from './segment-format';
import type { Extent } from '../disk/extents';
import type { SegmentHeader, SegmentRejectReason, SegmentStats } from './segment-format';

/** What BlockPipeline hands each worker thread at start. */
export interface PipelineWorkerData {
  encodeKey: KeyObject | null;
  decodeKeys: KeyObject[];
  compressionLevel: number;
}

export interface EncodeTask {
  machine: string;
  diskId: string;
  cycle: number;
  index: number;
  extents: Extent[];
  /** Moved to this thread: its ArrayBuffer is exactly this view (see transferableView). */
  data: Uint8Array;
}

export interface EncodeReply {
  segment: Uint8Array;
  header: SegmentHeader;
  stats: SegmentStats;
}

export interface DecodeTask {
  segment: Uint8Array;
}

// A verification failure is a result, not a thrown error: errors crossing threads lose their
// class and `reason`, and the caller needs both to decide what to do with the segment.
export type DecodeReply =
  | { ok: true; header: SegmentHeader; data: Uint8Array }
  | { ok: false; reason: SegmentRejectReason; detail: string };

/**
 * A view that can be put in a transferList without harming anything else: transferring detaches
 * the whole ArrayBuffer, so a view of part of one (a slice of Node's 8 KiB Buffer pool, or of a
 * caller's larger read buffer) is copied into its own; a view that owns its buffer is returned as is.
 */
export function transferableView(view: Uint8Array): Uint8Array {
  const owned =
    view.byteOffset === 0 &&
    view.byteLength === view.buffer.byteLength &&
    !(view.buffer instanceof SharedArrayBuffer);
  if (owned) return view;
  const copy = new Uint8Array(new ArrayBuffer(view.byteLength));
  copy.set(view);
  return copy;
}

interface WorkerState {
  encodeKey: EncryptionKey | null;
  keyring: Keyring;
  compressionLevel: number;
}

let state: WorkerState | undefined;

// Built on first use so that the main thread can import transferableView and the task types
// from this module without needing workerData.
function workerState(): WorkerState {
  if (state !== undefined) return state;
  const config = workerData as PipelineWorkerData | null;
  if (config === null || typeof config !== 'object') {
    throw new Error('pipeline worker started without workerData; start it through BlockPipeline');
  }
  const encodeKey = config.encodeKey === null ? null : EncryptionKey.fromKeyObject(config.encodeKey);
  const keyring = new Keyring(config.decodeKeys.map((k) => EncryptionKey.fromKeyObject(k)));
  state = { encodeKey, keyring, compressionLevel: config.compressionLevel };
  return state;
}

export function encode(task: EncodeTask): unknown {
  const { encodeKey, compressionLevel } = workerState();
  if (encodeKey === null) throw new Error('this BlockPipeline has no encryption key; pass `key` to encode');
  const { segment, header, stats } = encodeSegment({ ...task, compressionLevel }, encodeKey);
  const out = transferableView(segment);
  const reply: EncodeReply = { segment: out, header, stats };
  return moved(reply, out.buffer);
}

export function decode(task: DecodeTask): unknown {
  const { keyring } = workerState();
  try {
    const { header, data } = decodeSegment(task.segment, keyring);
    const out = transferableView(data);
    const reply: DecodeReply = { ok: true, header, data: out };
    return moved(reply, out.buffer);
  } catch (err) {
    if (!(err instanceof SegmentVerificationError)) throw err;
    const rejected: DecodeReply = { ok: false, reason: err.reason, detail: err.detail };
    return rejected;
  }
}

// Piscina transfers what a result lists under transferableSymbol, once the result is marked by move().
function moved(value: object, buffer: ArrayBufferLike): unknown {
  return move({ [transferableSymbol]: [buffer], [valueSymbol]: value });
}
