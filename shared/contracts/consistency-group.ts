// The public face of the consistencyGroup workflow and its protocol with the members'
// protectMachine workflows. Pure definitions, shared by the workflows, the CLI and the API.
//
// One group cut, in signals (workflows can only signal each other):
//   group → member  groupCut {cut}         finish what you are doing, then wait for the barrier
//   member → group  memberReport ready     idle, waiting
//   group           holdWrites             (activity) every member's writes are held
//   group → member  cutDecision {go}       freeze your disks now (or abort the cut)
//   member → group  memberReport frozen    frozen: the group releases the writes at once
//   member → group  memberReport published the member's point is in the catalog
// A member that cannot take part answers `failed` with the reason, and the cut is skipped.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ConsistencyGroup, GroupPoint } from '../group-types';

export interface GroupInput {
  group: ConsistencyGroup;
  /**
   * Hold every member's writes around the freeze (default true). False exists only so a test can
   * show the barrier matters: points cut without it are marked `consistent: false`.
   */
  barrier?: boolean;
  /** Present after continueAsNew. */
  carried?: GroupState;
  /** Cuts per run before continueAsNew (default 200). */
  maxCutsPerRun?: number;
}

/** starting: checking every member can hold its writes, then joining them. */
export type GroupStateName = 'starting' | 'active' | 'disabling' | 'disabled';

export interface GroupAlert {
  id: string;
  at: string;
  severity: 'warning' | 'critical';
  kind: 'cut-skipped' | 'cut-failed';
  /** The latest occurrence. */
  message: string;
  /** How many cuts in a row failed (or were skipped) this way; `at` is the first, `lastAt` the latest. */
  count?: number;
  lastAt?: string;
}

export interface BarrierStats {
  last: number;
  max: number;
  /** Mean over the cuts counted. */
  mean: number;
  count: number;
}

export interface GroupState {
  state: GroupStateName;
  intervalSeconds: number;
  cut: number;
  lastCutAt?: number;
  lastPoint?: Pick<GroupPoint, 'id' | 'instant' | 'barrierMs' | 'consistent'>;
  barrier?: BarrierStats;
  alerts: GroupAlert[];
  alertSeq: number;
  stats: { cuts: number; skipped: number; failed: number };
}

export interface GroupStatus extends GroupState {
  group: string;
  machines: string[];
  /** What the cut in progress is doing, when one is. */
  phase?: 'waiting-for-members' | 'holding-writes' | 'freezing' | 'releasing' | 'publishing';
  rpoSeconds?: number;
}

export interface GroupCut {
  group: string;
  cut: number;
  groupWorkflowId: string;
}

export interface MemberReport {
  cut: number;
  machine: string;
  phase: 'ready' | 'frozen' | 'published' | 'failed';
  pointId?: string;
  instant?: string;
  reason?: string;
}

export const groupCutSignal = defineSignal<[GroupCut]>('groupCut');
export const cutDecisionSignal = defineSignal<[{ cut: number; go: boolean }]>('cutDecision');
/** Membership: a member of a group cuts no scheduled points of its own. `group: null` leaves. */
export const setGroupSignal = defineSignal<[{ group: string | null }]>('setGroup');
export const memberReportSignal = defineSignal<[MemberReport]>('memberReport');

export const groupStatusQuery = defineQuery<GroupStatus>('status');
/** Cuts a group point now and returns it once every member's point is published. */
export const takeGroupPointUpdate = defineUpdate<GroupPoint>('takeGroupPoint');
export const setIntervalUpdate = defineUpdate<GroupStatus, [{ intervalSeconds: number }]>('setInterval');
export const disableGroupUpdate = defineUpdate<GroupStatus>('disable');
