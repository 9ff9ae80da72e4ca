// Activities of the control worker (the configuration-server role): vault and catalog work that
// belongs to no site's data path, and steering a machine's protection during a failover.
import { createStackProbeActivity } from '../common/stack-probe';
import { cutFinalPoint, endForwardReplication, releaseFailoverLock } from './protection-steering';
import {
  adoptNewDisks,
  awaitForwardSynced,
  awaitReprotected,
  finalReverseCycle,
  finishReenable,
  recordFailbackStage,
  startForwardReplication,
} from './failback-steering';
import { createPlanFailoverActivities } from './plan-failover';
import { membersOf, publishGroupPoint } from './group-points';
import type { GroupPoint } from '../../shared/group-types';
import { runPlanScript } from './plan-script';
import { agentQueue } from './agent-location';
import type { WorkerDeps } from '../deps';

export function createControlActivities(deps: WorkerDeps) {
  return {
    probeStorage: createStackProbeActivity('control', deps.blobService),
    cutFinalPoint: (input: { machine: string }) => cutFinalPoint(deps, input),
    endForwardReplication: (input: { machine: string; job: string }) => endForwardReplication(deps, input),
    releaseFailoverLock: (input: { machine: string; job: string }) => releaseFailoverLock(deps, input),
    // Consistency groups.
    membersOf: (input: { machines: string[] }) => membersOf(deps, input.machines),
    publishGroupPoint: (point: GroupPoint) => publishGroupPoint(deps, point),
    // Failback (reprotect, failback, re-enable).
    finalReverseCycle,
    awaitReprotected,
    startForwardReplication: (input: { machine: string }) => startForwardReplication(deps, input),
    awaitForwardSynced,
    recordFailbackStage: (input: Parameters<typeof recordFailbackStage>[1]) =>
      recordFailbackStage(deps, input),
    finishReenable: (input: { machine: string }) => finishReenable(deps, input),
    adoptNewDisks: (input: { machine: string }) => adoptNewDisks(deps, input),
    // Agent machines: the queue of the process server holding the agent's connection.
    agentQueue: (input: { agentId: string }) => agentQueue(deps, input),
    // Recovery plans.
    runPlanScript,
    ...createPlanFailoverActivities(),
  };
}

export type ControlActivities = ReturnType<typeof createControlActivities>;
