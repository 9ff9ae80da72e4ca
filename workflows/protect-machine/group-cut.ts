// A consistency group's cut on a member: say ready, wait for the group's go (its barrier holds
// the members' writes), then run one cycle frozen inside the barrier, reporting each phase.
import { condition, getExternalWorkflowHandle, log } from '@temporalio/workflow';
import {
  memberReportSignal,
  type GroupCut,
  type MemberReport,
} from '../../shared/contracts/consistency-group';
import { messageOf } from '../lib/failures';
import { cycle } from './cycle';
import type { ProtectRun } from './run';

/** How long a member that said `ready` waits for the group's go before giving the cut up. */
const CUT_DECISION_TIMEOUT = '10 minutes';

/** A group cut in progress on this member, and how to tell the group how it went. */
export interface GroupCycle {
  cut: GroupCut;
  report(r: Omit<MemberReport, 'cut' | 'machine'>): Promise<void>;
}

export async function groupCycle(run: ProtectRun, cut: GroupCut): Promise<void> {
  const { s, machine } = run;
  const groupHandle = getExternalWorkflowHandle(cut.groupWorkflowId);
  const g: GroupCycle = {
    cut,
    report: async (r) => {
      try {
        await groupHandle.signal(memberReportSignal, { cut: cut.cut, machine: machine.name, ...r });
      } catch (err) {
        // The group is gone (deleted meanwhile): this member's point is an ordinary one.
        log.warn('group report not delivered', { group: cut.group, error: messageOf(err) });
      }
    },
  };
  if (s.state !== 'protected') {
    await g.report({ phase: 'failed', reason: `machine ${machine.name} is ${s.state}` });
    return;
  }
  await g.report({ phase: 'ready' });
  const decided = await condition(
    () => run.cutDecision?.cut === cut.cut || run.pendingCut !== undefined || s.state === 'disabling',
    CUT_DECISION_TIMEOUT,
  );
  if (!decided || run.cutDecision?.cut !== cut.cut || !run.cutDecision.go) return;
  s.lastCycleAt = Date.now();
  await cycle(run, g);
}
