// Deletes an applied cycle from the cache container. The manifest goes first: a cycle caught
// half-deleted by a crash then has no manifest, so it can never be applied with segments missing
// (applyCycle reports it as not uploaded); a retry deletes the rest.
import { CONTAINERS } from '../../lib/azure/blob-client';
import { segmentCyclePrefix } from '../../lib/segments/segment-format';
import type { CycleRef } from '../../lib/segments/cycle-layout';
import { cycleManifestBlobName } from '../../lib/segments/cycle-layout';
import type { ApplierDeps } from './replica-disk';
import { forEachLimited, isNotFound } from './replica-disk';

/** Deletes the cycle's manifest and segments; returns how many blobs it deleted (0 on a repeat). */
export async function deleteCycleSegments(
  deps: Pick<ApplierDeps, 'blobService'>,
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
