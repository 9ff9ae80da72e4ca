// Cuts a cycle's extent list into segments of at most 4 MiB of disk: the same list always gives
// the same segments, so a retried or resumed transfer writes the same segment names.
import { coalesceExtents, type Extent } from '../disk/extents';
import { MAX_SEGMENT_RAW_BYTES } from './segment-header';

export interface SegmentPlan {
  index: number;
  extents: Extent[];
  rawBytes: number;
}

export function planSegments(extents: readonly Extent[], maxRawBytes = MAX_SEGMENT_RAW_BYTES): SegmentPlan[] {
  const plans: SegmentPlan[] = [];
  let current: SegmentPlan = { index: 0, extents: [], rawBytes: 0 };
  for (const extent of coalesceExtents(extents)) {
    let offset = extent.offset;
    let left = extent.length;
    while (left > 0) {
      const room = maxRawBytes - current.rawBytes;
      const take = Math.min(room, left);
      current.extents.push({ offset, length: take });
      current.rawBytes += take;
      offset += take;
      left -= take;
      if (current.rawBytes === maxRawBytes) {
        plans.push(current);
        current = { index: plans.length, extents: [], rawBytes: 0 };
      }
    }
  }
  if (current.rawBytes > 0) plans.push(current);
  return plans;
}

export function totalBytes(extents: readonly Extent[]): number {
  return extents.reduce((sum, e) => sum + e.length, 0);
}
