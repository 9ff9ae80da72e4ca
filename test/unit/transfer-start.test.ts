// The start of a transfer: eight upload lanes, but only as many segments read at once as the
// pipeline has threads, plus one. With all eight read together the first upload waited for the
// slowest of them while the link stood idle (bench --wan: 0.26 s after the plan, every profile).
// A fake agent holds every read until the test lets it go, so what runs at once is counted, not timed.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { AgentRequest } from '../../agent/protocol';
import { transferDisk, type TransferDeps } from '../../activities/process-server/transfer-disk';
import { AgentChannel, registerChannel, unregisterChannel } from '../../lib/agents/channel';
import type { BlobStorage } from '../../lib/azure/blob-client';
import type { BlockPipeline } from '../../lib/segments/block-pipeline';
import type { FrozenPoint } from '../../shared/replication-types';

const MiB = 1024 * 1024;
const SEGMENTS = 8;
const facts = { machineId: 'm', hostname: 'db-1', os: 'o', kernel: 'k', agentVersion: 'v', disks: [] };

/** Reads the fake agent holds, by request id, with their length. */
const held = new Map<number, number>();
let mostReading = 0;
const channel: AgentChannel = new AgentChannel('ag-start', facts, (line) => {
  const { id, request } = JSON.parse(line) as { id: number; request: AgentRequest };
  if (request.op !== 'read') throw new Error(`the test's agent was asked ${request.op}`);
  held.set(id, request.length);
  mostReading = Math.max(mostReading, held.size);
});
registerChannel(channel);
after(() => unregisterChannel(channel, 'test over'));

/** Answers every read held now. */
function answerReads(): void {
  for (const [id, length] of held) {
    held.delete(id);
    channel.onData(id, Buffer.alloc(length, 1));
  }
}

const point: FrozenPoint = {
  pitId: 'db-c1',
  machine: 'db',
  cycle: 1,
  instant: '2026-12-07T15:00:00.000Z',
  disks: [
    {
      diskId: 'vda',
      sizeBytes: 64 * MiB,
      exportName: 'db-c1/vda',
      nbdSocket: 'agent:ag-start',
      agentId: 'ag-start',
      bitmap: 'db-c1',
      mode: 'full',
    },
  ],
  warnings: [],
};

test('a transfer reads at most threads + 1 segments at once', async () => {
  // The cycle's plan was stored by an earlier attempt: the transfer goes straight to the reads.
  const plan = {
    mode: 'full',
    sizeBytes: 64 * MiB,
    extents: [{ offset: 0, length: SEGMENTS * 4 * MiB }],
    instant: point.instant,
  };
  const uploads: string[] = [];
  const container = {
    getBlockBlobClient: (name: string) => ({
      downloadToBuffer: async () => Buffer.from(JSON.stringify(plan)),
      uploadData: async () => void uploads.push(name),
      upload: async () => void uploads.push(name),
    }),
  };
  const pipeline = {
    threads: 2,
    encode: async ({ data }: { data: Buffer }) => {
      await new Promise((resolve) => setImmediate(resolve));
      return { segment: data.subarray(0, 16), stats: { zeroBytes: 0 } };
    },
  };
  const deps: TransferDeps = {
    blobService: { getContainerClient: () => container } as unknown as BlobStorage,
    pipeline: pipeline as unknown as BlockPipeline,
    uploadConcurrency: 8,
    heartbeat: () => undefined,
  };
  const input = { point, diskId: 'vda', mode: 'full' as const, fromIndex: 0, maxSegments: 64 };
  const sending = transferDisk(deps, input);
  let done = false;
  void sending.finally(() => (done = true));
  // Each read of a segment is answered once it is asked for, until the transfer ends.
  while (!done) {
    answerReads();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const slice = await sending;
  assert.equal(slice.done, true);
  assert.equal(uploads.filter((u) => u.endsWith('.seg')).length, SEGMENTS, 'every segment was uploaded');
  // A segment's reads are asked one after the other, so each read held is a segment being read.
  assert.ok(mostReading > 0, 'the agent was asked to read');
  assert.ok(mostReading <= 3, `at most threads + 1 segments read at once, saw ${mostReading}`);
});
