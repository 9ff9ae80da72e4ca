// The extent list of one disk in one cycle, stored beside its segments on the first transfer
// call so that every later slice, retry or resend cuts exactly the same segments.
import type { ContainerClient } from '@azure/storage-blob';
import { RestError } from '@azure/storage-blob';
import type { TransferMode } from '../../shared/replication-types';
import type { Extent } from '../disk/extents';
import { cyclePlanBlobName } from './cache-layout';

export { cyclePlanBlobName } from './cache-layout';

export interface CyclePlan {
  mode: TransferMode;
  sizeBytes: number;
  extents: Extent[];
  /** The instant of the frozen point it lists; absent in plans written before it was kept. */
  instant?: string;
}

export async function readCyclePlan(
  cache: ContainerClient,
  machine: string,
  diskId: string,
  cycle: number,
): Promise<CyclePlan | undefined> {
  try {
    const buf = await cache.getBlockBlobClient(cyclePlanBlobName(machine, diskId, cycle)).downloadToBuffer();
    return JSON.parse(buf.toString('utf8')) as CyclePlan;
  } catch (err) {
    if (err instanceof RestError && err.statusCode === 404) return undefined;
    throw err;
  }
}

export async function writeCyclePlan(
  cache: ContainerClient,
  machine: string,
  diskId: string,
  cycle: number,
  plan: CyclePlan,
): Promise<void> {
  const body = JSON.stringify(plan);
  await cache
    .getBlockBlobClient(cyclePlanBlobName(machine, diskId, cycle))
    .upload(body, Buffer.byteLength(body));
}
