// Compression of a data frame's bytes between the agent and its process server (protocol.ts).
// Node's zlib has no zstd before Node 22, so the agent compresses with brotli at quality 1 (as
// small as deflate level 1 on OSR's data for about a third of the CPU; deflate stays for peers
// that ask it) part by part, 64 KiB each, the block of OSR and of dm-era. A part that would not
// shrink goes stored, and a part whose sampled bytes look random is not even tried: the guest's
// CPU is the machine's own. The process server decompresses before its zstd pipeline, so segments
// in blob storage do not change. Pure: no I/O.
import zlib from 'node:zlib';

/** The codecs an agent names in its hello and a process server asks for in a read request. */
export type FrameCodec = 'brotli' | 'deflate';
/** The codecs this build can send and read, the preferred first. */
export const CODECS: readonly FrameCodec[] = ['brotli', 'deflate'];

const BROTLI = zlib.constants;
/** One part compressed alone; `max` bounds what one part may decompress to (a bomb stops there). */
const COMPRESS: Record<FrameCodec, (part: Buffer) => Buffer> = {
  brotli: (part) =>
    zlib.brotliCompressSync(part, {
      chunkSize: PART_BYTES,
      params: {
        [BROTLI.BROTLI_PARAM_QUALITY]: 1,
        [BROTLI.BROTLI_PARAM_LGWIN]: 16,
        [BROTLI.BROTLI_PARAM_SIZE_HINT]: part.length,
      },
    }),
  deflate: (part) => zlib.deflateRawSync(part, { level: 1, chunkSize: PART_BYTES }),
};
const DECOMPRESS: Record<FrameCodec, (piece: Buffer, max: number) => Buffer> = {
  brotli: (piece, max) => zlib.brotliDecompressSync(piece, { maxOutputLength: max }),
  deflate: (piece, max) => zlib.inflateRawSync(piece, { maxOutputLength: max }),
};

/** Bytes of one part: a part is compressed alone, so it is skipped alone. */
export const PART_BYTES = 64 * 1024;
/** Bits per byte over which a part is taken as incompressible (random data measures ~7.95). */
const ENTROPY_SKIP_BITS = 7.5;
/** Every this many bytes one is sampled for the entropy estimate (4096 samples a part). */
const SAMPLE_STEP = 16;

/** How a compressed frame's bytes are laid out: `parts[i]` bytes for the i-th 64 KiB of `raw`. */
export interface CompressedLayout {
  codec: FrameCodec;
  /** Bytes once inflated. */
  raw: number;
  /** Bytes of each part on the wire; a part as long as its raw slice is stored, a shorter one compressed. */
  parts: number[];
}

/** Shannon entropy (bits per byte) of a sample of the part: cheap enough for the guest's CPU. */
export function sampledEntropy(part: Buffer): number {
  const counts = new Uint32Array(256);
  let n = 0;
  for (let i = 0; i < part.length; i += SAMPLE_STEP, n++)
    counts[part[i] as number] = (counts[part[i] as number] as number) + 1;
  let bits = 0;
  for (const c of counts)
    if (c) {
      const p = c / n;
      bits -= p * Math.log2(p);
    }
  return bits;
}

/** The raw length of part `i` of a frame of `raw` bytes. */
function partRaw(raw: number, i: number): number {
  return Math.min(PART_BYTES, raw - i * PART_BYTES);
}

/**
 * Compresses `data` part by part, in place: each part's piece (compressed, or stored when it would
 * not shrink) is moved down to follow the previous one, which never reaches a part not yet read (a
 * piece is never longer than its part). The frame's bytes are `data.subarray(0, bytes)`: nothing is
 * held beyond the caller's buffer (the agent's reused read slot). `data` is overwritten.
 */
export function compressFrame(data: Buffer, codec: FrameCodec): { layout: CompressedLayout; bytes: number } {
  const parts: number[] = [];
  let bytes = 0;
  for (let at = 0; at < data.length; at += PART_BYTES) {
    const part = data.subarray(at, at + PART_BYTES);
    const packed = sampledEntropy(part) <= ENTROPY_SKIP_BITS ? COMPRESS[codec](part) : part;
    if (packed.length < part.length) packed.copy(data, bytes);
    else if (bytes < at) data.copyWithin(bytes, at, at + part.length);
    const piece = Math.min(packed.length, part.length);
    parts.push(piece);
    bytes += piece;
  }
  return { layout: { codec, raw: data.length, parts }, bytes };
}

/**
 * Checks a compressed frame's header against the largest frame allowed: a broken or hostile
 * peer's header throws here, before any byte of it is read.
 */
export function checkLayout(layout: unknown, length: number, maxRaw: number): CompressedLayout {
  const l = layout as Partial<CompressedLayout>;
  const codec = CODECS.find((c) => c === l.codec);
  if (!codec)
    throw new Error(
      `a data frame in codec "${String(l.codec)}", which this side does not read (${CODECS.join(', ')})`,
    );
  const raw = Number(l.raw);
  if (!Number.isInteger(raw) || raw < 0 || raw > maxRaw)
    throw new Error(`a compressed frame of ${String(l.raw)} raw bytes (at most ${maxRaw})`);
  const parts = l.parts;
  if (!Array.isArray(parts) || parts.length !== Math.ceil(raw / PART_BYTES))
    throw new Error(`a compressed frame of ${raw} bytes needs ${Math.ceil(raw / PART_BYTES)} parts`);
  let sum = 0;
  parts.forEach((p, i) => {
    if (!Number.isInteger(p) || p < 1 || p > partRaw(raw, i))
      throw new Error(`part ${i} of a compressed frame is ${String(p)} bytes (1 to ${partRaw(raw, i)})`);
    sum += p;
  });
  if (sum !== length)
    throw new Error(`a compressed frame whose parts add up to ${sum}, not its ${length} bytes`);
  return { codec, raw, parts };
}

/** The frame's raw bytes; throws when a part does not decompress to exactly its slice. */
export function decompressFrame(layout: CompressedLayout, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(layout.raw);
  let at = 0;
  layout.parts.forEach((p, i) => {
    const want = partRaw(layout.raw, i);
    const piece = payload.subarray(at, at + p);
    at += p;
    if (p === want) return void piece.copy(out, i * PART_BYTES);
    let inflated: Buffer;
    try {
      inflated = DECOMPRESS[layout.codec](piece, want);
    } catch (err) {
      throw new Error(`part ${i} of a compressed frame does not decompress: ${(err as Error).message}`);
    }
    if (inflated.length !== want)
      throw new Error(
        `part ${i} of a compressed frame decompresses to ${inflated.length} bytes, not ${want}`,
      );
    inflated.copy(out, i * PART_BYTES);
  });
  return out;
}
