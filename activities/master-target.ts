// Activities of a master target: apply segments to the primary site's disks during failback.
import { createStackProbeActivity } from './common/stack-probe';
import type { WorkerDeps } from './deps';

export function createMasterTargetActivities(deps: WorkerDeps) {
  return {
    probeStorage: createStackProbeActivity('master-target', deps.blobService),
  };
}

export type MasterTargetActivities = ReturnType<typeof createMasterTargetActivities>;
