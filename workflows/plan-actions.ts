// A recovery plan's script and manual actions, shared by the plan workflows that bring groups of
// machines up: recoveryPlan (drill, failover) and failbackPlan (the failback stage). Script
// actions run once as control activities; manual actions wait for the `approve` update, with a
// timeout that fails the plan or goes on, as the action says.
import { condition, defineUpdate, proxyActivities, setHandler } from '@temporalio/workflow';
import type { ControlActivities } from '../activities/control';
import type { PlanAction, PlanGroup } from '../shared/plan-types';
import { CONTROL_TASK_QUEUE } from '../shared/task-queues';
import type { ActionStatus, ApproveInput } from '../shared/contracts/recovery-plan';
import { messageOf } from './lib/failures';

const now = () => new Date(Date.now()).toISOString();

/** `approve` as every plan workflow answers it, with its own status (recoveryPlan: PlanStatus). */
const approveActionUpdate = defineUpdate<unknown, [ApproveInput]>('approve');

export function actionStatuses(group: Pick<PlanGroup, 'pre' | 'post'>): ActionStatus[] {
  return [
    ...group.pre.map((a) => ({ id: a.id, kind: a.kind, when: 'pre' as const, state: 'pending' as const })),
    ...group.post.map((a) => ({ id: a.id, kind: a.kind, when: 'post' as const, state: 'pending' as const })),
  ];
}

export interface PlanActions {
  run(group: PlanGroup, action: PlanAction, as: ActionStatus, points: Record<string, string>): Promise<void>;
}

/**
 * Installs the `approve` update (refused unless the named manual action is waiting now: an
 * approval is for what the operator sees, not for something later) and returns the runner.
 * `status` is read at each call, so the caller returns its own status object from the update.
 */
export function planActions<S>(options: {
  plan: string;
  job: string;
  actions: () => ActionStatus[];
  status: () => S;
}): PlanActions {
  const approvals = new Map<string, string>();
  const find = (id: string) => options.actions().find((a) => a.id === id);
  setHandler(
    approveActionUpdate,
    ({ action, by }) => {
      approvals.set(action, by);
      // Recorded at once, so the caller sees its approval in the status it gets back.
      const a = find(action);
      if (a) {
        a.state = 'done';
        a.approvedBy = by;
        a.endedAt = now();
      }
      return options.status();
    },
    {
      validator: ({ action, by }) => {
        const a = find(action);
        if (!a) throw new Error(`plan ${options.plan} has no action ${action}`);
        if (a.kind !== 'manual') throw new Error(`action ${action} is a script, not a manual action`);
        if (a.state !== 'waiting')
          throw new Error(`action ${action} is ${a.state}, not waiting for approval`);
        if (!by?.trim()) throw new Error("an approval needs the approver's name");
      },
    },
  );

  return {
    async run(group, action, as, points) {
      as.startedAt = now();
      try {
        if (action.kind === 'script') {
          as.state = 'running';
          const script = proxyActivities<ControlActivities>({
            taskQueue: CONTROL_TASK_QUEUE,
            startToCloseTimeout: `${action.timeoutSeconds + 60}s`,
            heartbeatTimeout: '30s',
            // A script is not known to be idempotent: run it once.
            retry: { maximumAttempts: 1 },
          });
          const r = await script.runPlanScript({
            plan: options.plan,
            group: group.name,
            job: options.job,
            actionId: action.id,
            command: action.command,
            timeoutSeconds: action.timeoutSeconds,
            machines: group.machines,
            points,
          });
          as.state = 'done';
          as.detail = `exit 0 in ${r.durationMs} ms`;
        } else {
          as.state = 'waiting';
          as.detail = action.instruction;
          const approved = await condition(() => approvals.has(action.id), action.timeoutSeconds * 1000);
          if (approved) {
            as.state = 'done';
            as.approvedBy = approvals.get(action.id);
          } else {
            as.state = 'timed-out';
            as.detail = `no approval in ${action.timeoutSeconds} s (${action.onTimeout}): ${action.instruction}`;
            if (action.onTimeout === 'fail')
              throw new Error(
                `manual action ${action.id} was not approved within ${action.timeoutSeconds} s`,
              );
          }
        }
      } catch (err) {
        if (as.state !== 'timed-out') {
          as.state = 'failed';
          as.detail = messageOf(err);
        }
        throw err;
      } finally {
        as.endedAt = now();
      }
    },
  };
}
