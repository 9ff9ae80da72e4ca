// A disk inside an agent machine as failback's target (lib/disk/target-device.ts): its reads,
// writes, zeros, flushes and checksums are requests to the agent over its connection (agent/
// failback-target.ts does them on the machine). Writes go TARGET_WRITE_BYTES per request, a few
// in flight, so one disk's writes keep the link busy without queueing megabytes in the agent.
import {
  CHECKSUM_SPAN_BYTES,
  DATA_CHUNK_BYTES,
  TARGET_WRITE_BYTES,
  type TargetOpened,
  type TargetRequest,
} from '../../agent/protocol';
import type { TargetDevice } from '../disk/target-device';
import { Semaphore } from '../segments/semaphore';
import { connectedChannel } from './channel';

/** Requests of one disk in flight at once (8 × 128 KiB: 1 MiB on the way). */
const WRITES_IN_FLIGHT = 8;
/** Zeros asked per request: the agent writes them in a few seconds even on a slow disk. */
const ZERO_REQUEST_BYTES = 64 * 1024 * 1024;

/** The agent is not connected to this process: the caller retries (it may be reconnecting). */
export class AgentNotHereError extends Error {
  override readonly name = 'AgentNotHereError';
}

const ask = (agentId: string, request: TargetRequest): Promise<unknown> =>
  connectedChannel(agentId, (message) => new AgentNotHereError(message)).request(request);

/** Opens the disks on the machine for failback (the agent checks nothing uses them); their sizes. */
export async function openAgentDisks(agentId: string, disks: string[]): Promise<TargetOpened['disks']> {
  return ((await ask(agentId, { op: 'target-open', disks })) as TargetOpened).disks;
}

/** Closes what failback opened on the machine; how many disks. */
export async function closeAgentDisks(agentId: string): Promise<number> {
  return ((await ask(agentId, { op: 'target-close' })) as { closed: number }).closed;
}

/** The most one checksums request covers, in whole blocks (each span starts on a block). */
export const checksumSpan = (blockBytes: number): number =>
  Math.max(1, Math.floor(CHECKSUM_SPAN_BYTES / blockBytes)) * blockBytes;

export class AgentTargetDisk implements TargetDevice {
  private readonly writes = new Semaphore(WRITES_IN_FLIGHT);

  private constructor(
    private readonly agentId: string,
    private readonly disk: string,
    readonly size: number,
  ) {}

  static async open(agentId: string, disk: string): Promise<AgentTargetDisk> {
    const [opened] = await openAgentDisks(agentId, [disk]);
    if (!opened) throw new Error(`agent ${agentId} did not open ${disk}`);
    return new AgentTargetDisk(agentId, disk, opened.sizeBytes);
  }

  async readInto(target: Buffer, targetOffset: number, offset: number, length: number): Promise<void> {
    for (let done = 0; done < length; done += DATA_CHUNK_BYTES) {
      const n = Math.min(DATA_CHUNK_BYTES, length - done);
      const data = (await ask(this.agentId, {
        op: 'target-read',
        disk: this.disk,
        offset: offset + done,
        length: n,
      })) as Buffer;
      if (data.length !== n) throw new Error(`agent ${this.agentId} read ${data.length} bytes of ${n}`);
      data.copy(target, targetOffset + done);
    }
  }

  async write(offset: number, data: Buffer): Promise<void> {
    const parts: Array<Promise<unknown>> = [];
    for (let done = 0; done < data.length; done += TARGET_WRITE_BYTES) {
      const part = data.subarray(done, Math.min(data.length, done + TARGET_WRITE_BYTES));
      const at = offset + done;
      parts.push(
        this.writes.run(() =>
          ask(this.agentId, {
            op: 'target-write',
            disk: this.disk,
            offset: at,
            data: part.toString('base64'),
          }),
        ),
      );
    }
    await Promise.all(parts);
  }

  async zero(offset: number, length: number): Promise<void> {
    for (let done = 0; done < length; done += ZERO_REQUEST_BYTES)
      await ask(this.agentId, {
        op: 'target-zero',
        disk: this.disk,
        offset: offset + done,
        length: Math.min(ZERO_REQUEST_BYTES, length - done),
      });
  }

  async flush(): Promise<void> {
    await ask(this.agentId, { op: 'target-flush', disk: this.disk });
  }

  /** The disk's block checksums over [offset, offset + length), hashed on the machine (16 bytes each). */
  async checksums(offset: number, length: number, blockBytes: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    const span = checksumSpan(blockBytes);
    for (let done = 0; done < length; done += span)
      parts.push(
        (await ask(this.agentId, {
          op: 'target-checksums',
          disk: this.disk,
          offset: offset + done,
          length: Math.min(span, length - done),
          blockBytes,
        })) as Buffer,
      );
    return Buffer.concat(parts);
  }

  /** The machine keeps the disk open until failback is over (closeAgentDisks). */
  async close(): Promise<void> {}
}
