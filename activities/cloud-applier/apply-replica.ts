// applyCycle into the disk's replica page blob (made or grown to the disk's size first): the
// cloud applier's target for the shared apply (activities/common/apply-cycle.ts).
import type { ApplySummary } from '../../shared/replication-types';
import { pageBlobTarget, type ApplyTarget } from '../../lib/segments/segment-apply';
import { applyCycle as applyCycleTo, type ApplyCycleInput } from '../common/apply-cycle';
import type { ApplierDeps } from './replica-disk';
import { ensureReplicaDisk, replicaBlobClient } from './replica-disk';

export {
  CYCLE_NOT_UPLOADED,
  MANIFEST_INVALID,
  SEGMENT_CORRUPT,
  type SegmentCorruptDetails,
} from '../common/apply-cycle';

/** Applies a cycle to the replica unless another `target` is given. */
export function applyCycle(
  deps: Pick<ApplierDeps, 'blobService' | 'pipeline'>,
  input: Omit<ApplyCycleInput, 'target'> & { target?: ApplyTarget },
): Promise<ApplySummary> {
  return applyCycleTo(deps, {
    ...input,
    target:
      input.target ??
      (async (manifest) => {
        const replica = await ensureReplicaDisk(deps, {
          machine: input.machine,
          diskId: input.diskId,
          sizeBytes: manifest.sizeBytes,
        });
        return pageBlobTarget(replicaBlobClient(deps.blobService, replica.blob), replica.sizeBytes);
      }),
  });
}
