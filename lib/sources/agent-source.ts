// Machines protected through the Mobility agent inside them (agent/tracking): every call is a
// request on the agent's own connection, which only the process server holding it can make. A
// process server the agent is not connected to says so as SourceUnreachableError: the cycle fails
// without retrying here and the workflow tries again after its backoff (the agent reconnects to a
// process server of the site; see docs/architecture.md, "The Mobility agent").
import type {
  EnableResult,
  FreezeResult,
  FreezeScriptCommands,
  HoldOutcome,
  ReleaseResult,
  ResumeResult,
  StopResult,
} from '../../agent/protocol';
import { CHECKSUM_SPAN_BYTES, HOLD_LIMIT_MS, READ_REQUEST_BYTES } from '../../agent/protocol';
import type { BarrierMethod } from '../../shared/group-types';
import { connectedChannel, AgentGoneError, AgentRequestError, type AgentChannel } from '../agents/channel';
import { coalesceExtents, type Extent } from '../disk/extents';
import { differingBlocks } from './differing-blocks';
import {
  FrozenPointGivenUpError,
  FrozenPointLostError,
  QuiesceError,
  SourceUnreachableError,
  WritesNotHeldError,
  type ChangedExtentOptions,
  type FrozenDiskReader,
  type FrozenSourceDisk,
  type SourceConnector,
  type SourceDisk,
  type SourceKind,
  type StopWritesResult,
} from './source-connector';

/** The agent does not know a request OSR needs: `osr agent upgrade` is the fix. Not retried. */
export class AgentTooOldError extends Error {
  override readonly name = 'AgentTooOldError';
}

const channelOf = (agentId: string): AgentChannel =>
  connectedChannel(agentId, (message) => new SourceUnreachableError(message));

/**
 * How long a hold may take to be in place (a few dmsetup calls in the machine): an agent slower than
 * that fails the cut rather than keep the other members' writes held waiting for it.
 */
const HOLD_ANSWER_MS = 15_000;

/** The agent's failures as the connector contract's kinds. */
async function ask<T>(
  channel: AgentChannel,
  request: Parameters<AgentChannel['request']>[0],
  timeoutMs?: number,
): Promise<T> {
  try {
    return (await channel.request(request, timeoutMs)) as T;
  } catch (err) {
    if (err instanceof AgentGoneError) throw new SourceUnreachableError(err.message);
    if (err instanceof AgentRequestError && err.kind === 'QuiesceError') throw new QuiesceError(err.message);
    if (err instanceof AgentRequestError && err.kind === 'FrozenPointLostError')
      throw new FrozenPointLostError(err.message);
    // The point's store under the agent's folder overflowed: the machine's writes went on without it.
    if (err instanceof AgentRequestError && err.kind === 'PointOverflowError')
      throw new FrozenPointGivenUpError(err.message);
    throw err;
  }
}

class AgentSourceConnector implements SourceConnector {
  constructor(
    private readonly agentId: string,
    private readonly channel: AgentChannel,
    /** The machine's --pre/--post: run by the agent on the machine, never on this server. */
    private readonly scripts: FreezeScriptCommands = {},
  ) {}

  async discoverDisks(): Promise<SourceDisk[]> {
    const { tracked } = await ask<{ tracked: string[] }>(this.channel, { op: 'list' });
    return this.channel.facts.disks
      .filter((d) => !d.readOnly)
      .map((d) => ({
        diskId: d.name,
        sizeBytes: d.sizeBytes,
        format: 'raw',
        tracked: tracked.includes(d.name),
      }));
  }

  async enableTracking(diskId: string) {
    const r = await ask<EnableResult>(this.channel, { op: 'enable', disk: diskId });
    return {
      diskId,
      persistent: true,
      fullSyncRequired: r.fullSyncRequired,
      warnings: r.warnings,
      ...(r.trackingLost ? { trackingLost: r.trackingLost } : {}),
    };
  }

  async freeze(diskIds: string[], pitId: string, options: { quiesce?: boolean } = {}) {
    const quiesce = !!options.quiesce;
    const scripts = quiesce && (this.scripts.pre || this.scripts.post) ? { scripts: this.scripts } : {};
    // Each script may take its whole time-out, and two run around the point (pre, then post).
    const timeoutMs = 120_000 + (scripts.scripts ? 2 * (this.scripts.timeoutSeconds ?? 60) * 1000 : 0);
    const r = await ask<FreezeResult>(
      this.channel,
      { op: 'freeze', disks: diskIds, pitId, quiesce, ...scripts },
      timeoutMs,
    );
    // The point names only disks this agent was asked to freeze, each once: it reads nothing else.
    const named = r.disks.map((d) => d.disk);
    if (named.length !== diskIds.length || diskIds.some((d) => !named.includes(d)))
      throw new Error(
        `agent ${this.agentId} froze ${named.join(', ') || 'no disk'} when asked for ${diskIds.join(', ')}: a broken or foreign agent; reinstall it (\`osr agent install\`)`,
      );
    return {
      pitId,
      instant: r.instant,
      disks: r.disks.map(
        (d): FrozenSourceDisk => ({
          diskId: d.disk,
          sizeBytes: d.sizeBytes,
          exportName: `${pitId}/${d.disk}`,
          nbdSocket: `agent:${this.agentId}`,
          agentId: this.agentId,
          // The change set is the agent's, named by the point: delta cycles ask it for it.
          bitmap: pitId,
        }),
      ),
    };
  }

  async listFrozen(): Promise<string[]> {
    return (await ask<{ points: string[] }>(this.channel, { op: 'list' })).points;
  }

  release(pitId: string, options: { success: boolean }): Promise<ReleaseResult> {
    return ask<ReleaseResult>(this.channel, { op: 'release', pitId, success: options.success });
  }

  async disableTracking(): Promise<void> {
    await ask(this.channel, { op: 'disable' });
  }

  async writeBarrier(): Promise<BarrierMethod> {
    return 'agent-hold';
  }

  /** The agent suspends its tracked disks' top devices; it lets them go by itself after HOLD_LIMIT_MS. */
  async holdWrites(): Promise<BarrierMethod> {
    try {
      await ask(this.channel, { op: 'hold' }, HOLD_ANSWER_MS);
    } catch (err) {
      // Queued behind the hold on the connection: a hold that starts late is cancelled by it.
      this.channel.request({ op: 'unhold' }, HOLD_LIMIT_MS).catch(() => undefined);
      throw err;
    }
    return 'agent-hold';
  }

  async releaseWrites(): Promise<void> {
    const r = await ask<HoldOutcome>(this.channel, { op: 'unhold' });
    if (!r.held)
      throw new WritesNotHeldError(
        r.expired
          ? `agent ${this.agentId} let the writes go by itself after ${Math.round(r.heldMs / 1000)} s (its limit is ${HOLD_LIMIT_MS / 1000} s)`
          : `agent ${this.agentId} held no writes at the release (it restarted, or the hold never took)`,
      );
  }

  /**
   * Stops every tracked disk's writes in the machine until resumeWrites (no time limit; kept
   * across agent restarts). The final point cut next is of the stopped disks.
   */
  async stopWrites(): Promise<StopWritesResult> {
    let r: StopResult;
    try {
      r = await ask<StopResult>(this.channel, { op: 'stop-writes' });
    } catch (err) {
      if (err instanceof AgentRequestError && /unknown request/.test(err.message))
        throw new AgentTooOldError(
          `agent ${this.agentId} is older than planned failover (it cannot stop the machine's writes); nothing was stopped. Upgrade it (\`osr agent upgrade ${this.agentId}\`) and fail over again, or fail over unplanned`,
        );
      throw err;
    }
    return {
      method: 'agent-stop',
      note: `agent ${this.agentId} suspended ${r.disks.join(', ')} at ${r.stoppedAt}: no write is acknowledged until the failover ends or \`osr agent resume ${this.agentId}\``,
    };
  }

  resumeWrites(): Promise<string> {
    return resumeAgentWrites(this.agentId);
  }

  async close(): Promise<void> {}
}

/** A frozen disk read through the agent, 4 MiB per request. */
class AgentFrozenDisk implements FrozenDiskReader {
  constructor(
    private readonly channel: AgentChannel,
    private readonly pitId: string,
    private readonly disk: string,
    readonly sizeBytes: number,
  ) {}

  async changedExtents(options: ChangedExtentOptions): Promise<Extent[]> {
    if (options.mode === 'resync') {
      if (!options.checksums) throw new Error('a resync cycle needs the replica checksums');
      const read = async (offset: number, length: number) => {
        const buf = Buffer.alloc(length);
        await this.readInto(buf, 0, offset, length);
        return buf;
      };
      // The agent hashes its snapshot: the disk does not cross the network, only what differs.
      const checksums = async (offset: number, length: number, blockBytes: number) => {
        try {
          return await ask<Buffer>(this.channel, {
            ...{ op: 'checksums', pitId: this.pitId, disk: this.disk },
            ...{ offset, length, blockBytes },
          });
        } catch (err) {
          // An agent older than this request: read the disk and hash it here.
          if (err instanceof AgentRequestError && /unknown request/.test(err.message)) return undefined;
          throw err;
        }
      };
      return differingBlocks(
        { size: this.sizeBytes, read, checksums, checksumSpanBytes: CHECKSUM_SPAN_BYTES },
        options.checksums,
        options.onProgress,
      );
    }
    const json = await ask<Buffer>(this.channel, {
      op: 'changes',
      pitId: this.pitId,
      disk: this.disk,
      mode: options.mode,
    });
    const pairs = JSON.parse(json.toString('utf8')) as Array<[number, number]>;
    return coalesceExtents(pairs.map(([offset, length]) => ({ offset, length })));
  }

  async readInto(target: Buffer, targetOffset: number, offset: number, length: number): Promise<void> {
    for (let done = 0; done < length; ) {
      const n = Math.min(READ_REQUEST_BYTES, length - done);
      const data = await ask<Buffer>(this.channel, {
        op: 'read',
        pitId: this.pitId,
        disk: this.disk,
        offset: offset + done,
        length: n,
        ...(this.channel.codec ? { codec: this.channel.codec } : {}),
      });
      if (data.length !== n) throw new Error(`agent sent ${data.length} bytes for a read of ${n}`);
      data.copy(target, targetOffset + done);
      done += n;
    }
  }

  async close(): Promise<void> {}
}

/** Lets a planned failover's stopped writes go (`osr agent resume`, or the failover's teardown). */
export async function resumeAgentWrites(agentId: string): Promise<string> {
  const r = await ask<ResumeResult>(channelOf(agentId), { op: 'resume-writes' });
  return r.resumed
    ? `agent ${agentId} resumed the machine's writes after ${Math.round(r.stoppedMs / 1000)} s`
    : `agent ${agentId} had no writes stopped`;
}

export const agentSource: SourceKind = {
  type: 'agent',
  async connect(machine) {
    if (machine.source.type !== 'agent')
      throw new Error(`machine ${machine.name} is not protected through an agent`);
    const { pre, post, timeoutSeconds } = machine.quiesce ?? {};
    return new AgentSourceConnector(machine.source.agentId, channelOf(machine.source.agentId), {
      ...(pre ? { pre } : {}),
      ...(post ? { post } : {}),
      ...(timeoutSeconds ? { timeoutSeconds } : {}),
    });
  },
  async openFrozenDisk(disk) {
    if (!disk.agentId) throw new Error(`disk ${disk.diskId} was not frozen by an agent`);
    const [pitId] = disk.exportName.split('/');
    return new AgentFrozenDisk(channelOf(disk.agentId), pitId ?? '', disk.diskId, disk.sizeBytes);
  },
};
