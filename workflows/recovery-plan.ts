// recoveryPlan: a recovery plan's test failover, cleanup or failover (then commit). Groups run one
// after the other, each as: pre actions, its machines in parallel, post actions. Every machine is
// a CHILD workflow of the single-machine workflows (testFailover, cleanupTestFailover, failover)
// under its usual readable id, so each machine's steps live in the child's history and the plan's
// history grows by a few events per machine only. Script actions run as activities on the control
// worker; manual actions wait for the `approve` update, with a timeout that fails the plan or
// goes on, as the action says.
import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  executeChild,
  log,
  proxyActivities,
  setHandler,
  startChild,
  setCurrentDetails,
  upsertSearchAttributes,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import { FAILURE } from '../shared/failures';
import type { ControlActivities } from '../activities/control';
import type { PlanAction, PlanGroup } from '../shared/plan-types';
import { OSR_JOB_KIND, OSR_MACHINE, OSR_PLAN, OSR_STATE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import { cleanupWorkflowId, drillWorkflowId } from '../shared/contracts/test-failover';
import { failoverWorkflowId } from '../shared/contracts/failover';
import type { RecoveryJobKind, RecoveryStatus } from '../shared/contracts/recovery-job';
import {
  planCommitUpdate,
  planStatusQuery,
  type GroupStatus,
  type MachineStatus,
  type PlanState,
  type PlanStatus,
  type RecoveryPlanInput,
} from '../shared/contracts/recovery-plan';
import { actionStatuses, planActions } from './plan-actions';
import { messageOf } from './lib/failures';

const watch = proxyActivities<ControlActivities>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '2h',
  heartbeatTimeout: '30s',
  retry: {
    initialInterval: '1s',
    maximumInterval: '10s',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [FAILURE.RecoveryFailed],
  },
});

const now = () => new Date(Date.now()).toISOString();

export async function recoveryPlan(input: RecoveryPlanInput): Promise<PlanStatus> {
  const { job, operation, plan } = input;
  const status: PlanStatus = {
    job,
    plan: plan.name,
    operation,
    state: 'running',
    startedAt: now(),
    groups: plan.groups.map((g) => ({
      name: g.name,
      state: 'pending',
      actions: actionStatuses(g),
      machines: g.machines.map((m) => ({ machine: m, workflowId: childId(m), state: 'pending' as const })),
    })),
  };
  let commitRequested = false;
  const failoverChildren: Array<ChildWorkflowHandle<() => Promise<RecoveryStatus>>> = [];

  function childId(machine: string): string {
    if (operation === 'test-failover') return drillWorkflowId(machine, job);
    if (operation === 'failover') return failoverWorkflowId(machine, job);
    return cleanupWorkflowId(machine, input.machines[machine]?.drillJob ?? job);
  }
  function setState(state: PlanState): void {
    status.state = state;
    upsertSearchAttributes([{ key: OSR_STATE, value: state }]);
    showDetails();
  }
  /** The Temporal Web UI's current details: the plan's state and where each group is. */
  function showDetails(): void {
    setCurrentDetails(`${status.state} · ${status.groups.map((g) => `${g.name}: ${g.state}`).join(', ')}`);
  }

  setHandler(planStatusQuery, () => status);
  const actions = planActions({
    plan: plan.name,
    job,
    actions: () => status.groups.flatMap((g) => g.actions),
    status: () => status,
  });
  setHandler(
    planCommitUpdate,
    async () => {
      commitRequested = true;
      await condition(() => status.state === 'committed' || status.state === 'failed');
      return status;
    },
    {
      validator: () => {
        if (operation !== 'failover') throw new Error(`a ${operation} plan has nothing to commit`);
        if (status.state !== 'failed-over' || commitRequested)
          throw new Error(
            `cannot commit plan ${plan.name} (${job}) while it is ${commitRequested ? 'committing' : status.state}`,
          );
      },
    },
  );

  try {
    for (const [i, group] of plan.groups.entries()) await runGroup(group, status.groups[i]!);
  } catch (err) {
    throw markFailed(err);
  }
  if (operation !== 'failover') {
    setState(operation === 'cleanup' ? 'cleaned-up' : 'ready');
    status.endedAt = now();
    return status;
  }

  setState('failed-over');
  await condition(() => commitRequested);
  setState('running');
  try {
    // Group by group, as the machines failed over.
    for (const g of status.groups)
      await Promise.all(g.machines.map((m) => watch.commitMachineFailover({ workflowId: m.workflowId })));
    await Promise.all(failoverChildren.map((c) => c.result()));
    for (const g of status.groups) for (const m of g.machines) m.detail = 'committed';
  } catch (err) {
    const failure = markFailed(err);
    // The commit update returns the failed status before the workflow ends.
    await condition(allHandlersFinished);
    throw failure;
  }
  setState('committed');
  status.endedAt = now();
  await condition(allHandlersFinished);
  return status;

  function markFailed(err: unknown): ApplicationFailure {
    status.error = messageOf(err);
    status.endedAt = now();
    setState('failed');
    log.warn('recovery plan failed', { job, plan: plan.name, error: status.error });
    return ApplicationFailure.create({ type: FAILURE.PlanFailed, message: status.error, nonRetryable: true });
  }

  async function runGroup(group: PlanGroup, gs: GroupStatus): Promise<void> {
    gs.state = 'running';
    gs.startedAt = now();
    try {
      for (const action of group.pre) await runAction(group, action, gs);
      const results = await Promise.allSettled(gs.machines.map((ms) => runMachine(ms)));
      const failedOnes = results.flatMap((r, i) =>
        r.status === 'rejected' ? [`${gs.machines[i]?.machine}: ${messageOf(r.reason)}`] : [],
      );
      if (failedOnes.length) throw new Error(`group ${group.name}: ${failedOnes.join('; ')}`);
      for (const action of group.post) await runAction(group, action, gs);
      gs.state = 'done';
    } catch (err) {
      gs.state = 'failed';
      throw err;
    } finally {
      gs.endedAt = now();
    }
  }

  async function runMachine(ms: MachineStatus): Promise<void> {
    const m = input.machines[ms.machine];
    if (!m) throw ApplicationFailure.nonRetryable(`no input for machine ${ms.machine}`);
    ms.state = 'running';
    ms.startedAt = now();
    ms.pointId = m.point?.id;
    const kind: RecoveryJobKind =
      operation === 'test-failover' ? 'drill' : operation === 'cleanup' ? 'drill-cleanup' : 'failover';
    const options = {
      workflowId: ms.workflowId,
      taskQueue: CONTROL_TASK_QUEUE,
      typedSearchAttributes: [
        { key: OSR_MACHINE, value: ms.machine },
        { key: OSR_JOB_KIND, value: kind },
        { key: OSR_STATE, value: 'running' },
        { key: OSR_PLAN, value: plan.name },
      ],
    };
    try {
      if (operation === 'test-failover') {
        const r = await executeChild('testFailover', {
          ...options,
          args: [{ job, machine: m.machine, point: m.point!, settings: m.settings }],
        });
        ms.detail = `${(r as RecoveryStatus).disks.length} disk(s) ready`;
      } else if (operation === 'cleanup') {
        await executeChild('cleanupTestFailover', {
          ...options,
          args: [
            {
              job,
              machine: ms.machine,
              drillJob: m.drillJob ?? job,
              ...(m.settings?.target === 'azure' ? { azure: true } : {}),
              ...(m.settings?.target === 'libvirt' ? { libvirt: true } : {}),
            },
          ],
        });
        ms.detail = `drill ${m.drillJob} removed`;
      } else {
        const child = await startChild('failover', {
          ...options,
          args: [{ job, machine: m.machine, planned: !m.point, point: m.point, settings: m.settings }],
        });
        failoverChildren.push(child as ChildWorkflowHandle<() => Promise<RecoveryStatus>>);
        await watch.awaitFailedOver({ workflowId: ms.workflowId });
        ms.detail = 'failed over, waiting for commit';
      }
      ms.state = 'done';
    } catch (err) {
      ms.state = 'failed';
      ms.detail = messageOf(err);
      throw err;
    } finally {
      ms.endedAt = now();
    }
  }

  async function runAction(group: PlanGroup, action: PlanAction, gs: GroupStatus): Promise<void> {
    const as = gs.actions.find((a) => a.id === action.id)!;
    if (operation === 'cleanup') {
      // Actions bring a group up (drill or failover); removing a drill's disks needs none of them.
      as.state = 'skipped';
      as.detail = 'actions run on test failover and failover, not on cleanup';
      as.startedAt = as.endedAt = now();
      return;
    }
    const points = Object.fromEntries(
      group.machines.flatMap((m) => {
        const p = input.machines[m]?.point;
        return p ? [[m, p.id]] : [];
      }),
    );
    await actions.run(group, action, as, points);
  }
}
