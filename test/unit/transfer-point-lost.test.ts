// A machine that crashes (or whose agent restarts) while its point is being sent: the restarted
// agent answers the process server's next request for that point with FrozenPointLostError. The
// transfer must fail for good then, naming the lost point, so the cycle fails at once (alerting)
// and the next one resyncs; retried, it found the point gone 20 times over ~8 minutes, with no
// alert (the agent-resilience crash test's "no point after the crash within 420 s"). The same
// fake agent shows which stored plan a transfer trusts: only one listed for its own freeze.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { RestError } from '@azure/storage-blob';
import { ApplicationFailure } from '@temporalio/common';
import type { AgentRequest } from '../../agent/protocol';
import { transferDisk, type TransferDeps } from '../../activities/process-server/transfer-disk';
import { AgentChannel, registerChannel, unregisterChannel } from '../../lib/agents/channel';
import type { BlobStorage } from '../../lib/azure/blob-client';
import type { BlockPipeline } from '../../lib/segments/block-pipeline';
import { newChecksumList } from '../../lib/segments/checksums';
import { FAILURE } from '../../shared/failures';
import type { FrozenPoint } from '../../shared/replication-types';

const MiB = 1024 * 1024;
const facts = { machineId: 'm', hostname: 'web-1', os: 'o', kernel: 'k', agentVersion: 'v', disks: [] };

/** What the process server asked the agent, in order. */
const asked: string[] = [];

/** The agent as it is after a reboot: it knows no frozen point (tracker.pointDisk's answer). */
const channel: AgentChannel = new AgentChannel('ag-crashed', facts, (line) => {
  const { id, request } = JSON.parse(line) as { id: number; request: AgentRequest };
  asked.push(request.op);
  const pit = 'pitId' in request ? request.pitId : '?';
  setImmediate(() =>
    channel.onReply(id, undefined, {
      name: 'FrozenPointLostError',
      message: `no frozen point ${pit} of vda on this machine`,
    }),
  );
});
registerChannel(channel);
after(() => unregisterChannel(channel, 'test over'));

const point: FrozenPoint = {
  pitId: 'web-c7',
  machine: 'web',
  cycle: 7,
  instant: '2026-12-06T23:00:00.000Z',
  disks: [
    {
      diskId: 'vda',
      sizeBytes: 24 * MiB,
      exportName: 'web-c7/vda',
      nbdSocket: 'agent:ag-crashed',
      agentId: 'ag-crashed',
      bitmap: 'web-c7',
      mode: 'delta',
    },
  ],
  warnings: [],
};

const CHECKSUMS_BLOB = 'checksums/web/vda';

/**
 * A cache container with the replica's checksums and the cycle's plan (an earlier attempt listed
 * the changes), or no plan.
 */
function cacheWith(plan?: object): BlobStorage {
  const container = {
    getBlockBlobClient: (name: string) => ({
      downloadToBuffer: async () => {
        if (name === CHECKSUMS_BLOB) return newChecksumList(64 * 1024, 24 * MiB).bytes;
        if (!plan) throw new RestError('no such blob', { statusCode: 404 });
        return Buffer.from(JSON.stringify(plan));
      },
    }),
    listBlobsFlat: async function* () {},
    deleteBlob: async () => undefined,
  };
  return { getContainerClient: () => container } as unknown as BlobStorage;
}

function deps(plan?: object): TransferDeps {
  return {
    blobService: cacheWith(plan),
    pipeline: { threads: 2 } as BlockPipeline, // encode is never reached: no read succeeds
    uploadConcurrency: 2,
    heartbeat: () => undefined,
  };
}

const input = { point, diskId: 'vda', mode: 'delta' as const, fromIndex: 0, maxSegments: 64 };

async function failure(run: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await run.then(
    () => assert.fail('the transfer of a lost point succeeded'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ApplicationFailure, `not an ApplicationFailure: ${String(err)}`);
  return err;
}

test('a point lost while its changes are listed fails the transfer for good', async () => {
  const err = await failure(transferDisk(deps(), input));
  assert.equal(err.type, FAILURE.PointInTimeLost);
  assert.equal(err.nonRetryable, true);
  assert.match(
    err.message,
    /^the frozen point in time web-c7 is gone from the source \(did the machine or its agent restart\?\): no frozen point web-c7 of vda on this machine/,
  );
});

test('a point lost while its blocks are read (the plan was stored) fails the transfer for good', async () => {
  const plan = { mode: 'delta', sizeBytes: 24 * MiB, extents: [{ offset: 0, length: 4 * MiB }] };
  const err = await failure(transferDisk(deps(plan), input));
  assert.equal(err.type, FAILURE.PointInTimeLost);
  assert.equal(err.nonRetryable, true);
  assert.match(err.message, /web-c7 is gone from the source .*no frozen point web-c7 of vda/);
});

test('resync: a point lost while the agent hashes it fails the transfer for good', async () => {
  const resync = { ...input, mode: 'resync' as const, checksumsBlob: CHECKSUMS_BLOB };
  const err = await failure(transferDisk(deps(), resync));
  assert.equal(err.type, FAILURE.PointInTimeLost);
  assert.equal(err.nonRetryable, true);
});

test('a plan stored for another freeze under the same cycle number is listed again, not reused', async () => {
  const extents = [{ offset: 0, length: 4 * MiB }];
  const stale = { mode: 'delta', sizeBytes: 24 * MiB, extents, instant: '2026-11-01T08:00:00.000Z' };
  asked.length = 0;
  await failure(transferDisk(deps(stale), input));
  assert.deepEqual(asked, ['changes'], "the point's changes were listed: the stale plan was not used");
  asked.length = 0;
  await failure(transferDisk(deps({ ...stale, instant: point.instant }), input));
  assert.deepEqual(asked, ['read'], "this freeze's own plan is reused: its blocks are read at once");
});
