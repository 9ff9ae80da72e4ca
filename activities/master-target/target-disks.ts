// The master target's hands on a target disk (lib/disk/target-device.ts): a writable NBD export of
// an original disk, or a disk inside an agent machine, written through its agent (in the process
// server holding the agent's connection, where the agent's failback activities run).
import { ApplicationFailure } from '@temporalio/common';
import type { FailbackTargetDisk } from '../../shared/failback-types';
import { CONTAINERS, type BlobStorage } from '../../lib/azure/blob-client';
import type { TargetDevice } from '../../lib/disk/target-device';
import { AgentTargetDisk, checksumSpan } from '../../lib/agents/agent-target-disk';
import { AgentRequestError } from '../../lib/agents/channel';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { zeroFill } from '../../lib/qemu/nbd-ranges';
import { targetChecksums } from '../../lib/qemu/nbd-checksums';
import { checksumsBlobName } from '../../lib/segments/cache-layout';
import { newChecksumList } from '../../lib/segments/checksums';

export async function openTargetDisk(disk: FailbackTargetDisk): Promise<TargetDevice> {
  if (disk.agentId) return agentCall(() => AgentTargetDisk.open(disk.agentId as string, disk.node));
  const nbd = await NbdClient.connect({ socket: nbdSocketOf(disk), exportName: disk.exportName ?? '' });
  return {
    size: nbd.size,
    readInto: (target, targetOffset, offset, length) => nbd.readInto(target, targetOffset, offset, length),
    write: (offset, data) => nbd.write(offset, data),
    zero: (offset, length) => zeroFill(nbd, offset, length),
    flush: () => nbd.flush(),
    close: () => nbd.close(),
  };
}

function nbdSocketOf(disk: FailbackTargetDisk): string {
  if (!disk.nbdSocket) throw new Error(`target disk ${disk.diskId} has neither an NBD export nor an agent`);
  return disk.nbdSocket;
}

/** Checksums of a target disk, stored in osr-cache in the replica-checksum format (the diff resync). */
export async function targetDiskChecksums(
  deps: { blobService: BlobStorage },
  input: { listId: string; disk: FailbackTargetDisk; blockBytes: number },
  onProgress?: (bytes: number) => void,
): Promise<{ blob: string; blocks: number; bytesRead: number }> {
  const { disk, blockBytes } = input;
  if (!disk.agentId) return targetChecksums(deps, input, onProgress);
  const device = await agentCall(() => AgentTargetDisk.open(disk.agentId as string, disk.node));
  // Hashed on the machine: 16 bytes per block cross the network, not the disk.
  const { bytes: list, blocks, at } = newChecksumList(blockBytes, device.size);
  const span = checksumSpan(blockBytes);
  for (let offset = 0; offset < device.size; offset += span) {
    const length = Math.min(span, device.size - offset);
    (await agentCall(() => device.checksums(offset, length, blockBytes))).copy(list, at(offset / blockBytes));
    onProgress?.(offset + length);
  }
  const blob = checksumsBlobName(input.listId, disk.diskId, blockBytes);
  await deps.blobService
    .getContainerClient(CONTAINERS.cache)
    .getBlockBlobClient(blob)
    .uploadData(list, { blobHTTPHeaders: { blobContentType: 'application/octet-stream' } });
  return { blob, blocks, bytesRead: device.size };
}

/**
 * An agent's answer that retrying cannot change (a disk in use, an agent too old for failback)
 * fails the activity for good, naming the fix; a lost connection is retried.
 */
export async function agentCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof AgentRequestError && /unknown request target-/.test(err.message))
      throw ApplicationFailure.nonRetryable(
        `${err.message}: this agent predates failback into its machine; upgrade it (\`osr agent upgrade\`) and try again`,
      );
    if (err instanceof AgentRequestError && err.kind === 'DiskInUseError')
      throw ApplicationFailure.nonRetryable(err.message, 'DiskInUseError');
    throw err;
  }
}
