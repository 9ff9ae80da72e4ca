// The control worker: runs every OSR workflow (on the control task queue) and the vault activities.
import { createControlActivities } from '../activities/control';
import { createWorkerDeps } from '../activities/deps';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { main } from './run-worker';

main({
  role: 'control',
  taskQueue: () => CONTROL_TASK_QUEUE,
  runsWorkflows: true,
  alertNotifier: true,
  setup: async (config, log) => ({
    activities: createControlActivities(await createWorkerDeps(config, log, 'control')),
  }),
});
