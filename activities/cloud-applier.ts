// Activities of the cloud applier: verify and apply segments to replica page blobs, publish
// recovery points as blob snapshots, prune by retention.
import { createStackProbeActivity } from './common/stack-probe';
import type { WorkerDeps } from './deps';

export function createCloudApplierActivities(deps: WorkerDeps) {
  return {
    probeStorage: createStackProbeActivity('cloud-applier', deps.blobService),
  };
}

export type CloudApplierActivities = ReturnType<typeof createCloudApplierActivities>;
