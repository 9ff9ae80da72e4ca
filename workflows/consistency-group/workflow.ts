// consistencyGroup: the entity workflow of a multi-VM consistency group (id `group/<name>`). Every
// interval it cuts one group point: it asks each member's protectMachine to finish what it is
// doing and wait, holds every member's writes (process-server activity), lets all members freeze
// their disks, releases the writes as soon as the last one is frozen, and once every member's point
// is published writes the group point to the catalog. Barrier lengths are measured and reported.
// The parts: run.ts (state and small helpers), cut.ts (one cut), hold-routing.ts (where members are held).
import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import {
  disableGroupUpdate,
  groupStatusQuery,
  memberReportSignal,
  setGroupSignal,
  setIntervalUpdate,
  takeGroupPointUpdate,
  type GroupInput,
  type GroupStatus,
} from '../../shared/contracts/consistency-group';
import { FAILURE } from '../../shared/failures';
import type { GroupPoint } from '../../shared/group-types';
import { OSR_STATE } from '../../shared/search-attributes';
import { messageOf } from '../lib/failures';
import { historyIsLong as historyBudgetSpent } from '../lib/history';
import { cutOnce } from './cut';
import { barrierFor } from './hold-routing';
import { member, pendingRequests, startRun, status, type GroupRun } from './run';

const CUTS_PER_RUN = 200;

export async function consistencyGroup(input: GroupInput): Promise<GroupStatus> {
  const run = startRun(input);
  const { s, group, barrier, control } = run;
  setHandlers(run);

  if (s.state === 'starting') {
    // A member whose writes cannot be held would make every cut a lie: refuse the group.
    if (barrier) {
      for (const machine of await control.membersOf({ machines: group.machines })) {
        try {
          await (await barrierFor(run, machine)).ps.checkWriteBarrier({ machine });
        } catch (err) {
          throw ApplicationFailure.create({
            type: FAILURE.NoWriteBarrier,
            nonRetryable: true,
            message: messageOf(err),
          });
        }
      }
    }
    // Join: from now on the group, not each member's policy, times the members' points.
    for (const m of group.machines) {
      await member(m)
        .signal(setGroupSignal, { group: group.name })
        .catch(() => {
          throw ApplicationFailure.create({
            type: FAILURE.MemberNotProtected,
            nonRetryable: true,
            message: `machine ${m} has no running protection workflow: protect it first`,
          });
        });
    }
    s.state = 'active';
  }
  upsertSearchAttributes([{ key: OSR_STATE, value: s.state }]);

  const historyIsLong = () => historyBudgetSpent(run.cutsThisRun, input.maxCutsPerRun ?? CUTS_PER_RUN);

  while (s.state === 'active') {
    if (historyIsLong() && !pendingRequests(run)) {
      await condition(() => allHandlersFinished() || pendingRequests(run) || s.state !== 'active');
      if (s.state === 'active' && !pendingRequests(run)) {
        await continueAsNew<typeof consistencyGroup>({ ...input, carried: s });
      }
      continue;
    }
    const due = (s.lastCutAt ?? 0) + s.intervalSeconds * 1000;
    if (pendingRequests(run) || Date.now() >= due) {
      s.lastCutAt = Date.now();
      await cutOnce(run);
      continue;
    }
    run.wake = false;
    await condition(() => run.wake, Math.max(1, due - Date.now()));
  }
  // Leave: members go back to cutting points on their own policy.
  for (const r of run.requests) if (!r.done) r.failed = `group ${group.name} is being disabled`;
  for (const m of group.machines)
    await member(m)
      .signal(setGroupSignal, { group: null })
      .catch(() => undefined);
  s.state = 'disabled';
  upsertSearchAttributes([{ key: OSR_STATE, value: s.state }]);
  return status(run);
}

function setHandlers(run: GroupRun): void {
  const { s, group } = run;
  const refuseUnlessActive = (action: string): void => {
    if (s.state !== 'active') throw new Error(`cannot ${action} group ${group.name} while it is ${s.state}`);
  };
  setHandler(groupStatusQuery, () => status(run));
  setHandler(memberReportSignal, (r) => {
    if (r.cut !== run.currentCut) return; // a late answer about an earlier cut
    // Keep the furthest phase: signals of one member arrive in order, but be safe.
    run.reports.set(r.machine, r);
  });
  setHandler(
    takeGroupPointUpdate,
    async () => {
      const request: { done?: GroupPoint; failed?: string } = {};
      run.requests.push(request);
      run.wake = true;
      await condition(() => request.done !== undefined || request.failed !== undefined);
      if (request.failed)
        throw ApplicationFailure.create({
          type: FAILURE.GroupPointFailed,
          message: request.failed,
          nonRetryable: true,
        });
      return request.done as GroupPoint;
    },
    { validator: () => refuseUnlessActive('take a point of') },
  );
  setHandler(
    setIntervalUpdate,
    ({ intervalSeconds }) => {
      s.intervalSeconds = intervalSeconds;
      run.wake = true;
      return status(run);
    },
    {
      validator: ({ intervalSeconds }) => {
        refuseUnlessActive('change the interval of');
        if (!Number.isInteger(intervalSeconds) || intervalSeconds < 1)
          throw new Error(`interval must be a whole number of seconds, at least 1 (got ${intervalSeconds})`);
      },
    },
  );
  setHandler(
    disableGroupUpdate,
    async () => {
      s.state = 'disabling';
      run.wake = true;
      await condition(() => s.state === 'disabled');
      return status(run);
    },
    { validator: () => refuseUnlessActive('disable') },
  );
}
