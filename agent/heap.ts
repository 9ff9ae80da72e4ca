// Each 64 KiB part zlib compresses leaves a compressor object and its output buffer behind. The
// buffers live outside V8's heap, which frees them only at its next young-generation collection,
// and that waits for the young generation (1 MiB, AGENT_NODE_FLAGS) to fill with JS objects: a
// frame's few KiB of those. Left alone, tens of MiB of dead buffers pile up between collections
// (BENCHMARKS.md, "The agent's memory"); one young collection per compressed frame frees them.

/** A young-generation collection when the agent's node runs with --expose-gc; nothing otherwise. */
export function collectCompressorGarbage(): void {
  globalThis.gc?.({ type: 'minor' });
}
