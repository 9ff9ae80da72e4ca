// failbackPlan: one failback stage (reprotect, failback or re-enable) for every machine of a
// recovery plan. Groups run one after the other, the machines of a group at once, each as a CHILD
// workflow of the single-machine workflow under its usual id (`reprotect/<m>`, `failback/<m>/<job>`,
// `reenable/<m>/<job>`), so its steps stay in its own history. A reprotect child runs on after the
// plan (it is reverse replication until failback): it is started abandoned, and a control activity
// waits until its diff resync is applied. A machine that fails stops the plan: later groups are
// skipped. The failback stage, which brings machines up on the primary site, runs each group's
// pre and post actions as a failover does (scripts, and manual actions approved with `approve`);
// reprotect and re-enable bring nothing up and run none.
import {
  ApplicationFailure,
  ParentClosePolicy,
  executeChild,
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { FAILURE } from '../shared/failures';
import type { ControlActivities } from '../activities/control';
import { OSR_JOB_KIND, OSR_MACHINE, OSR_PLAN, OSR_STATE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import {
  failbackPlanStatusQuery,
  type FailbackPlanInput,
  type FailbackPlanStatus,
  type PlanStageMachine,
} from '../shared/contracts/failback-plan';
import type { FailbackStatus } from '../shared/contracts/failback';
import { actionStatuses, planActions } from './plan-actions';
import { messageOf } from './lib/failures';

const watch = proxyActivities<ControlActivities>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '12h',
  heartbeatTimeout: '30s',
  retry: {
    initialInterval: '1s',
    maximumInterval: '10s',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [FAILURE.ReprotectFailed],
  },
});

export async function failbackPlan(input: FailbackPlanInput): Promise<FailbackPlanStatus> {
  const status: FailbackPlanStatus = {
    job: input.job,
    plan: input.plan,
    stage: input.stage,
    state: 'running',
    groups: input.groups.map((g) => ({
      name: g.name,
      state: 'pending',
      ...(g.pre || g.post ? { actions: actionStatuses({ pre: g.pre ?? [], post: g.post ?? [] }) } : {}),
      machines: g.machines.map((m) => ({
        machine: m,
        workflowId: input.machines[m]?.workflowId ?? '',
        state: 'pending',
      })),
    })),
  };
  setHandler(failbackPlanStatusQuery, () => status);
  const actions = planActions({
    plan: input.plan,
    job: input.job,
    actions: () => status.groups.flatMap((g) => g.actions ?? []),
    status: () => status,
  });
  const runActions = async (i: number, when: 'pre' | 'post') => {
    const spec = input.groups[i];
    const group = status.groups[i];
    if (!spec || !group) return;
    const plan = { name: spec.name, machines: spec.machines, pre: spec.pre ?? [], post: spec.post ?? [] };
    for (const action of plan[when]) {
      const as = group.actions?.find((a) => a.id === action.id);
      if (as) await actions.run(plan, action, as, {});
    }
  };
  const setState = (state: FailbackPlanStatus['state']) => {
    status.state = state;
    upsertSearchAttributes([{ key: OSR_STATE, value: state }]);
  };

  for (const [i, group] of status.groups.entries()) {
    if (status.state === 'failed') {
      group.state = 'skipped';
      continue;
    }
    group.state = 'running';
    if (group.actions?.length) {
      try {
        await runActions(i, 'pre');
      } catch (err) {
        group.state = 'failed';
        status.error = `group ${group.name}: ${messageOf(err)}`;
        setState('failed');
        continue;
      }
    }
    const results = await Promise.allSettled(
      group.machines.map(async (ms) => {
        const m = input.machines[ms.machine];
        if (!m) throw ApplicationFailure.nonRetryable(`no prepared input for ${ms.machine}`);
        ms.state = 'running';
        try {
          ms.detail = await runMachine(input.plan, ms.machine, m);
          ms.state = 'done';
        } catch (err) {
          ms.state = 'failed';
          ms.detail = messageOf(err);
          throw err;
        }
      }),
    );
    let failed = results.filter((r) => r.status === 'rejected');
    if (!failed.length && group.actions?.length) {
      try {
        await runActions(i, 'post');
      } catch (err) {
        failed = [{ status: 'rejected', reason: err }];
        status.error = `group ${group.name}: ${messageOf(err)}`;
      }
    }
    group.state = failed.length ? 'failed' : 'done';
    if (failed.length && !status.error) {
      status.error = `group ${group.name}: ${group.machines
        .filter((m) => m.state === 'failed')
        .map((m) => `${m.machine}: ${m.detail}`)
        .join('; ')}`;
    }
    if (failed.length) setState('failed');
  }
  if (status.state === 'failed')
    throw ApplicationFailure.create({
      type: FAILURE.PlanFailed,
      message: status.error ?? 'failed',
      nonRetryable: true,
    });
  setState('done');
  return status;
}

async function runMachine(plan: string, machine: string, m: PlanStageMachine): Promise<string> {
  const attributes = (kind: string) => [
    { key: OSR_MACHINE, value: machine },
    { key: OSR_JOB_KIND, value: kind },
    { key: OSR_STATE, value: kind === 'reprotect' ? 'preparing' : 'running' },
    { key: OSR_PLAN, value: plan },
  ];
  switch (m.stage) {
    case 'reprotect': {
      // Reverse replication outlives the plan job: it ends with the machine's failback.
      await startChild('reprotect', {
        workflowId: m.workflowId,
        args: [m.input],
        taskQueue: CONTROL_TASK_QUEUE,
        parentClosePolicy: ParentClosePolicy.ABANDON,
        typedSearchAttributes: attributes('reprotect'),
      });
      const state = await watch.awaitReprotected({ workflowId: m.workflowId });
      return `reverse replication ${state}`;
    }
    case 'failback': {
      const r = (await executeChild('failback', {
        workflowId: m.workflowId,
        args: [m.input],
        taskQueue: CONTROL_TASK_QUEUE,
        typedSearchAttributes: attributes('failback'),
      })) as FailbackStatus;
      return r.steps.find((s) => s.name === 'bring up original')?.detail ?? r.state;
    }
    case 'reenable': {
      const r = (await executeChild('reenable', {
        workflowId: m.workflowId,
        args: [m.input],
        taskQueue: CONTROL_TASK_QUEUE,
        typedSearchAttributes: attributes('reenable'),
      })) as FailbackStatus;
      return r.reenable
        ? `resync sent ${r.reenable.bytesSent} bytes for ${r.reenable.bytesChanged} differing`
        : r.state;
    }
  }
}
