// A process-server worker for this site: scale out by starting more of them.
import { createWorkerDeps } from '../activities/deps';
import { createProcessServerActivities } from '../activities/process-server';
import { processServerQueue } from '../shared/task-queues';
import { main } from './run-worker';

main({
  role: 'process-server',
  taskQueue: (config) => processServerQueue(config.site),
  setup: async (config, log) => ({
    activities: createProcessServerActivities(createWorkerDeps(config, log)),
  }),
});
