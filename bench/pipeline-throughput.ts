// Micro-benchmark of segment encoding: MB/s of raw input for random, compressible and zero data,
// inline on the main thread and through BlockPipeline with 1 and 2 threads.
// Run: node --import tsx bench/pipeline-throughput.ts [MiB per run, default 128]
// Each case runs 3 times and prints the median and the best run: the first runs of a process are
// slower while the allocator and the heap grow into the hundreds of MiB the runs allocate.
import { randomFillSync } from 'node:crypto';
import os from 'node:os';
import { BlockPipeline } from '../lib/segments/block-pipeline';
import { EncryptionKey } from '../lib/segments/keys';
import { encodeSegment, MAX_SEGMENT_RAW_BYTES } from '../lib/segments/segment-format';

type Kind = 'random' | 'compressible' | 'zero';

const SEGMENT = MAX_SEGMENT_RAW_BYTES;
const totalMiB = Number(process.argv[2] ?? 128);
const jobsPerCase = Math.max(4, Math.round((totalMiB * 1024 * 1024) / SEGMENT));
const key = EncryptionKey.generate();

// Log-like text with numbers: zstd level 1 takes it to about 30 % of its size.
function compressibleTemplate(): Buffer {
  const words = [
    'the',
    'block',
    'device',
    'sector',
    'write',
    'read',
    'error',
    'warning',
    'info',
    'kernel',
    'request',
    'response',
    'latency',
    'upstream',
    'timeout',
    'connection',
    'user',
    'alice',
    'bob',
    'cycle',
  ];
  const out = Buffer.alloc(SEGMENT);
  let state = 0x9e3779b9;
  for (let at = 0; at < SEGMENT; ) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    const word = state % 5 === 0 ? String(state % 100000) : words[state % words.length]!;
    at += out.write(`${word}${state % 9 === 0 ? '\n' : ' '}`, at);
  }
  return out;
}

const template = compressibleTemplate();

// Fresh buffers per job, made before timing: the pipeline moves (detaches) what it is given.
function makeJobs(kind: Kind, count: number): Buffer[] {
  return Array.from({ length: count }, () => {
    const buffer = Buffer.allocUnsafeSlow(SEGMENT);
    if (kind === 'random') randomFillSync(buffer);
    else if (kind === 'compressible') template.copy(buffer);
    else buffer.fill(0);
    return buffer;
  });
}

function extentsOf(index: number): Array<{ offset: number; length: number }> {
  return [{ offset: index * SEGMENT, length: SEGMENT }];
}

const RUNS = 3;

interface Run {
  mbPerSecond: number;
  ratio: number;
}

interface Row {
  mode: string;
  kind: Kind;
  median: number;
  best: number;
  ratio: number;
}

async function measure(mode: string, kind: Kind, once: () => Promise<Run> | Run): Promise<Row> {
  const runs: Run[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await once());
  const speeds = runs.map((r) => r.mbPerSecond).sort((a, b) => a - b);
  return {
    mode,
    kind,
    median: speeds[Math.floor(speeds.length / 2)]!,
    best: speeds[speeds.length - 1]!,
    ratio: runs[0]!.ratio,
  };
}

function inline(kind: Kind): Run {
  const jobs = makeJobs(kind, jobsPerCase);
  let segmentBytes = 0;
  const start = process.hrtime.bigint();
  jobs.forEach((data, index) => {
    const { stats } = encodeSegment(
      { machine: 'bench', diskId: 'd0', cycle: 1, index, extents: extentsOf(index), data },
      key,
    );
    segmentBytes += stats.segmentBytes;
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const raw = jobsPerCase * SEGMENT;
  return { mbPerSecond: raw / 1e6 / seconds, ratio: raw / segmentBytes };
}

async function pooled(kind: Kind, threads: number): Promise<Run> {
  const pipeline = new BlockPipeline({ threads, maxBytesInFlight: threads * 2 * SEGMENT, key });
  try {
    // Warm up: threads start and load zstd before the clock runs.
    await Promise.all(
      makeJobs(kind, threads * 2).map((data, index) =>
        pipeline.encode({
          machine: 'bench',
          diskId: 'd0',
          cycle: 0,
          index,
          extents: extentsOf(index),
          data,
        }),
      ),
    );
    const jobs = makeJobs(kind, jobsPerCase);
    const before = pipeline.stats();
    const start = process.hrtime.bigint();
    await Promise.all(
      jobs.map((data, index) =>
        pipeline.encode({
          machine: 'bench',
          diskId: 'd0',
          cycle: 1,
          index,
          extents: extentsOf(index),
          data,
        }),
      ),
    );
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const after = pipeline.stats();
    const raw = after.rawBytesIn - before.rawBytesIn;
    const out = after.segmentBytesOut - before.segmentBytesOut;
    return { mbPerSecond: raw / 1e6 / seconds, ratio: raw / out };
  } finally {
    await pipeline.destroy();
  }
}

async function main(): Promise<void> {
  console.log(
    `encode throughput: ${jobsPerCase} segments of ${SEGMENT / 1024 / 1024} MiB per run, ${RUNS} runs per case, ` +
      `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), Node ${process.version}`,
  );
  const rows: Row[] = [];
  const kinds: Kind[] = ['random', 'compressible', 'zero'];
  for (const kind of kinds) rows.push(await measure('inline', kind, () => inline(kind)));
  for (const threads of [1, 2]) {
    const mode = `pool, ${threads} thread${threads > 1 ? 's' : ''}`;
    for (const kind of kinds) rows.push(await measure(mode, kind, () => pooled(kind, threads)));
  }
  console.log(
    `${'mode'.padEnd(16)}${'data'.padEnd(14)}${'MB/s median'.padStart(12)}${'best'.padStart(8)}${'raw/segment'.padStart(13)}`,
  );
  for (const row of rows) {
    const ratio = row.ratio > 1000 ? '>1000' : row.ratio.toFixed(2);
    console.log(
      `${row.mode.padEnd(16)}${row.kind.padEnd(14)}${row.median.toFixed(0).padStart(12)}` +
        `${row.best.toFixed(0).padStart(8)}${ratio.padStart(13)}`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
