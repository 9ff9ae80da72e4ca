// Each 64 KiB part zlib compresses leaves a compressor object and its 64 KiB output buffer behind.
// The buffers live outside V8's heap, which frees them only at its next young-generation
// collection, and that waits for the young generation (1 MiB, AGENT_NODE_FLAGS) to fill with JS
// objects: a frame brings a few KiB of those. Left alone, tens of MiB of dead buffers pile up
// between collections (BENCHMARKS.md, "The agent's memory"); one young collection every 2 MiB
// compressed keeps them under 2 MiB (after every 1 MiB frame: 2 MiB less, a third more CPU).

/** Bytes compressed between two young collections. */
const COLLECT_EVERY_BYTES = 2 * 1024 * 1024;
let since = 0;

/**
 * Counts `bytes` just compressed; a young-generation collection once COLLECT_EVERY_BYTES are,
 * when the agent's node runs with --expose-gc (nothing otherwise).
 */
export function compressed(bytes: number): void {
  since += bytes;
  if (since < COLLECT_EVERY_BYTES) return;
  since = 0;
  globalThis.gc?.({ type: 'minor' });
}
