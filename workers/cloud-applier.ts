// The cloud applier worker in the recovery site.
import { createCloudApplierActivities } from '../activities/cloud-applier';
import { createDataPathDeps } from '../activities/deps';
import { CLOUD_APPLIER_TASK_QUEUE } from '../shared/task-queues';
import { main } from './run-worker';

main({
  role: 'cloud-applier',
  taskQueue: () => CLOUD_APPLIER_TASK_QUEUE,
  setup: async (config, log) => {
    const deps = await createDataPathDeps(config, log, 'cloud-applier');
    return { activities: createCloudApplierActivities(deps), close: () => deps.pipeline.destroy() };
  },
});
