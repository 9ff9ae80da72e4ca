// Activities of the control worker (the configuration-server role): vault and catalog work that
// belongs to no site's data path.
import { createStackProbeActivity } from './common/stack-probe';
import type { WorkerDeps } from './deps';

export function createControlActivities(deps: WorkerDeps) {
  return {
    probeStorage: createStackProbeActivity('control', deps.blobService),
  };
}

export type ControlActivities = ReturnType<typeof createControlActivities>;
