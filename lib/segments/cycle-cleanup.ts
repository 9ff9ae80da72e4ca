// Deletes an applied cycle from the cache container, with every earlier cycle of the disk still
// there: a cycle that failed left its segments (and plan) behind, and once a later cycle of the
// disk is applied they are never needed again (a failed cycle's changes were merged back into the
// tracking and sent by a later one). Later cycles and the disk's resync checksums stay.
//
// Manifests go first: a cycle caught half-deleted by a crash then has no manifest, so it can never
// be applied with segments missing (applyCycle reports it as not uploaded); a retry deletes the rest.
import { CONTAINERS, type BlobStorage } from '../azure/blob-client';
import { forEachLimited, isNotFound } from '../azure/page-blobs';
import type { CycleRef } from './cycle-layout';
import { MANIFEST_FILE, diskCachePrefix } from './cache-layout';

/** Deletes the cycle's blobs and those of earlier cycles; returns how many (0 on a repeat). */
export async function deleteCycleSegments(
  deps: { blobService: BlobStorage },
  ref: CycleRef,
): Promise<{ deleted: number }> {
  const cache = deps.blobService.getContainerClient(CONTAINERS.cache);
  const diskPrefix = diskCachePrefix(ref.machine, ref.diskId);
  const manifests: string[] = [];
  const rest: string[] = [];
  try {
    for await (const item of cache.listBlobsFlat({ prefix: diskPrefix })) {
      const [cycle = '', file] = item.name.slice(diskPrefix.length).split('/');
      if (file === undefined || !/^[0-9]+$/.test(cycle) || Number(cycle) > ref.cycle) continue;
      (file === MANIFEST_FILE ? manifests : rest).push(item.name);
    }
    let deleted = 0;
    const remove = async (name: string) => {
      if ((await cache.getBlobClient(name).deleteIfExists()).succeeded) deleted++;
    };
    await forEachLimited(manifests, 8, remove);
    await forEachLimited(rest, 8, remove);
    return { deleted };
  } catch (err) {
    if (isNotFound(err)) return { deleted: 0 }; // no cache container: nothing to delete
    throw err;
  }
}
