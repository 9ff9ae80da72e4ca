// Deletes an applied cycle from the cache container. The manifest goes first: a cycle caught
// half-deleted by a crash then has no manifest, so it can never be applied with segments missing
// (applyCycle reports it as not uploaded); a retry deletes the rest.
import { CONTAINERS, type BlobStorage } from '../azure/blob-client';
import { forEachLimited, isNotFound } from '../azure/page-blobs';
import type { CycleRef } from './cycle-layout';
import { cycleManifestBlobName, segmentCyclePrefix } from './cache-layout';

/** Deletes the cycle's manifest and segments; returns how many blobs it deleted (0 on a repeat). */
export async function deleteCycleSegments(
  deps: { blobService: BlobStorage },
  ref: CycleRef,
): Promise<{ deleted: number }> {
  const cache = deps.blobService.getContainerClient(CONTAINERS.cache);
  let deleted = 0;
  try {
    const manifest = await cache
      .getBlobClient(cycleManifestBlobName(ref.machine, ref.diskId, ref.cycle))
      .deleteIfExists();
    if (manifest.succeeded) deleted++;
    const names: string[] = [];
    for await (const item of cache.listBlobsFlat({
      prefix: segmentCyclePrefix(ref.machine, ref.diskId, ref.cycle),
    })) {
      names.push(item.name);
    }
    await forEachLimited(names, 8, async (name) => {
      if ((await cache.getBlobClient(name).deleteIfExists()).succeeded) deleted++;
    });
  } catch (err) {
    if (isNotFound(err)) return { deleted }; // no cache container: nothing to delete
    throw err;
  }
  return { deleted };
}
