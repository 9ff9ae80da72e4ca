// A master-target worker in the primary site (failback).
import { createWorkerDeps } from '../activities/deps';
import { createMasterTargetActivities } from '../activities/master-target';
import { masterTargetQueue } from '../shared/task-queues';
import { main } from './run-worker';

main({
  role: 'master-target',
  taskQueue: (config) => masterTargetQueue(config.site),
  setup: async (config, log) => ({ activities: createMasterTargetActivities(createWorkerDeps(config, log)) }),
});
