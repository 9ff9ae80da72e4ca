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
