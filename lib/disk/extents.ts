// Byte ranges of a disk: the one Extent type of OSR, used by source connectors (what changed),
// the block pipeline (what a segment carries) and the appliers.

/** A byte range of a disk. Offsets and lengths are multiples of 512 where they reach a segment. */
export interface Extent {
  offset: number;
  length: number;
}

/** Sorts and merges touching or overlapping extents. */
export function coalesceExtents(extents: readonly Extent[]): Extent[] {
  const sorted = [...extents].filter((e) => e.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Extent[] = [];
  for (const e of sorted) {
    const last = out[out.length - 1];
    if (last && e.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, e.offset + e.length - last.offset);
    } else {
      out.push({ offset: e.offset, length: e.length });
    }
  }
  return out;
}

/** Anything that reads length bytes at offset of a disk into target at targetOffset. */
export interface ReadsInto {
  readInto(target: Buffer, targetOffset: number, offset: number, length: number): Promise<void>;
}

/** Reads the extents (pipelined) into one buffer, concatenated in the order given. */
export async function readExtents(reader: ReadsInto, extents: readonly Extent[]): Promise<Buffer> {
  const data = Buffer.allocUnsafeSlow(extents.reduce((a, e) => a + e.length, 0));
  let at = 0;
  await Promise.all(
    extents.map((e) => {
      const into = at;
      at += e.length;
      return reader.readInto(data, into, e.offset, e.length);
    }),
  );
  return data;
}

/** Whether any of the extents touches [offset, offset + length). */
export function touchesAny(extents: readonly Extent[], offset: number, length: number): boolean {
  return extents.some((e) => e.offset < offset + length && offset < e.offset + e.length);
}
