// Multi-VM consistency groups: machines whose recovery points are cut together as one consistent
// cut (design invariant 2). Pure types and vault names, safe to import from workflow code.
import { vaultSegment } from './names';

/** A consistency group's configuration (vault: groups/<name>.json). */
export interface ConsistencyGroup {
  name: string;
  /** Protected machines; all on one site, so one process server can hold all their writes. */
  machines: string[];
  site: string;
  /** The members' host, when they run on one (`osr protect --host`): its process servers hold the writes. */
  host?: string;
  /** How often a group point is cut. Members cut no scheduled points of their own meanwhile. */
  intervalSeconds: number;
  createdAt: string;
}

/**
 * How a member's writes were held during a group cut: QMP `stop` (a QEMU VM), `virsh suspend` (a
 * libvirt domain), the guest agent's fsfreeze, the machine's quiesce hooks, the Mobility agent's
 * hold (its tracked disks suspended in the machine's device-mapper); or it was paused.
 */
export type BarrierMethod =
  | 'qmp-stop'
  | 'libvirt-suspend'
  | 'guest-agent'
  | 'quiesce-hook'
  | 'agent-hold'
  | 'already-paused';

export interface HeldMachine {
  machine: string;
  method: BarrierMethod;
}

/** One member's point in a group point. */
export interface GroupPointMember {
  machine: string;
  pointId: string;
  instant: string;
}

/** A group recovery point (vault: group-points/<group>/<id>.json): one point per member. */
export interface GroupPoint {
  id: string;
  group: string;
  cut: number;
  /** Writes acknowledged before this instant are in every member's point, later ones in none. */
  instant: string;
  members: GroupPointMember[];
  /** How long writes were held on the members, ms: the cost of consistency to the workload. */
  barrierMs: number;
  methods: HeldMachine[];
  /** False only for cuts taken without a write barrier (tests proving the barrier matters). */
  consistent: boolean;
  createdAt: string;
}

export const groupDocs = {
  group: (name: string) => `groups/${vaultSegment('group name', name)}.json`,
  point: (group: string, id: string) =>
    `${groupDocs.points(group)}${vaultSegment('group point id', id)}.json`,
  points: (group: string) => `group-points/${vaultSegment('group name', group)}/`,
};

export function groupWorkflowId(name: string): string {
  return `group/${name}`;
}

/** The tag a member's point carries when it belongs to a group point. */
export function groupPointTag(group: string, cut: number): string {
  return `group:${group}:${cut}`;
}
