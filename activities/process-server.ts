// Activities of a process server: read changed extents at the source, run them through the block
// pipeline and upload segments to the cache container.
import { createStackProbeActivity } from './common/stack-probe';
import type { WorkerDeps } from './deps';

export function createProcessServerActivities(deps: WorkerDeps) {
  return {
    probeStorage: createStackProbeActivity('process-server', deps.blobService),
  };
}

export type ProcessServerActivities = ReturnType<typeof createProcessServerActivities>;
