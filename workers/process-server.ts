// A process-server worker for this site: scale out by starting more of them.
import { createDataPathDeps } from '../activities/deps';
import { createProcessServerActivities } from '../activities/process-server';
import { processServerQueue, servesRecoverySite } from '../shared/task-queues';
import { main } from './run-worker';

main({
  role: 'process-server',
  taskQueue: (config) => processServerQueue(config.site),
  // Reprotect: the recovery site's process-server role (same code, the recovery site's queue).
  extraTaskQueues: (config) => (servesRecoverySite(config) ? [processServerQueue(config.recoverySite)] : []),
  setup: async (config, log) => {
    const deps = await createDataPathDeps(config, log);
    return { activities: createProcessServerActivities(deps), close: () => deps.pipeline.destroy() };
  },
});
