// OSR's dirty bitmaps on a QEMU block node: named `osr-<generation>`; the enabled one with the
// highest generation records new writes, the newest disabled older one is a frozen point's.

/** One entry of `dirty-bitmaps` in query-named-block-nodes. */
export interface BitmapInfo {
  name: string;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  granularity: number;
  count: number;
  inconsistent?: boolean;
}

const BITMAP = /^osr-(\d+)$/;

export function bitmapName(generation: number): string {
  return `osr-${generation}`;
}

/** The generation of an OSR bitmap name, or null for other bitmaps. */
export function bitmapGeneration(name: string): number | null {
  const m = BITMAP.exec(name);
  return m?.[1] === undefined ? null : Number(m[1]);
}

/**
 * Reads the OSR bitmaps of one node: the recording one, the frozen one (the newest disabled
 * one older than it), other consistent leftovers, and those QEMU marked inconsistent because
 * it was killed while they were in use.
 */
export function trackingOf(bitmaps: BitmapInfo[]): {
  current: BitmapInfo | null;
  frozen: BitmapInfo | null;
  others: BitmapInfo[];
  inconsistent: BitmapInfo[];
  maxGeneration: number;
} {
  const gen = (b: BitmapInfo): number => bitmapGeneration(b.name) ?? 0;
  const osr = bitmaps.filter((b) => bitmapGeneration(b.name) !== null).sort((a, b) => gen(a) - gen(b));
  const usable = osr.filter((b) => !b.inconsistent);
  const current = usable.filter((b) => b.recording).pop() ?? null;
  const frozen = current ? (usable.filter((b) => !b.recording && gen(b) < gen(current)).pop() ?? null) : null;
  const last = osr[osr.length - 1];
  return {
    current,
    frozen,
    others: usable.filter((b) => b !== current && b !== frozen),
    inconsistent: osr.filter((b) => b.inconsistent),
    maxGeneration: last ? gen(last) : 0,
  };
}
