// A master-target worker in the primary site (failback).
import { createDataPathDeps } from '../activities/deps';
import { createMasterTargetActivities } from '../activities/master-target';
import { masterTargetQueue } from '../shared/task-queues';
import { main } from './run-worker';

main({
  role: 'master-target',
  taskQueue: (config) => masterTargetQueue(config.site),
  setup: async (config, log) => {
    // A data-path role: it verifies (decodes) segments and journals what it overwrites.
    const deps = await createDataPathDeps(config, log, 'master-target');
    return { activities: createMasterTargetActivities(deps), close: () => deps.pipeline.destroy() };
  },
});
