// Recovery plans (vault: plans/<name>.json): named, ordered groups of machines, each group with
// pre and post actions. Pure types and validation, safe to import from workflow code.
import { nameProblem, vaultSegment } from './names';

/** A command run by the control worker with OSR_PLAN, OSR_GROUP, OSR_MACHINES, OSR_JOB, OSR_POINTS. */
export interface ScriptAction {
  id: string;
  kind: 'script';
  command: string;
  timeoutSeconds: number;
}

/** The workflow waits for an operator's approval (`osr approve <job> <id>`). */
export interface ManualAction {
  id: string;
  kind: 'manual';
  instruction: string;
  timeoutSeconds: number;
  /** What happens when nobody approves in time: the plan fails, or goes on. */
  onTimeout: 'fail' | 'continue';
}

export type PlanAction = ScriptAction | ManualAction;

export interface PlanGroup {
  name: string;
  machines: string[];
  pre: PlanAction[];
  post: PlanAction[];
}

/**
 * The azure target: machines whose settings name this source network (`sourceNetwork`) land on
 * these subnets when recovered by the plan. Drills go to drillSubnetId; only drillOnProductionSubnet
 * puts them on the production subnet.
 */
export interface PlanNetwork {
  source: string;
  /** azure target: the subnet a machine of this source network fails over to. */
  subnetId?: string;
  /** libvirt target: the libvirt network a NIC on this primary-site network (or bridge) is put on. */
  libvirtNetwork?: string;
  drillSubnetId?: string;
  drillOnProductionSubnet?: boolean;
}

export interface RecoveryPlan {
  name: string;
  groups: PlanGroup[];
  networks?: PlanNetwork[];
  /** Its failover and commit wait for a second identity's approval (operations/approvals.ts). */
  requireApproval?: boolean;
  createdAt: string;
}

export const planDoc = (name: string) => `plans/${vaultSegment('plan name', name)}.json`;

/**
 * Every reason the plan cannot run, so the operator fixes them at once. `known`: the protected
 * machines' names.
 */
export function planProblems(plan: RecoveryPlan, known: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  const planName = nameProblem('plan', plan.name);
  if (planName) problems.push(planName);
  if (plan.groups.length === 0) problems.push('a plan needs at least one group');
  const seenIn = new Map<string, string>();
  const actionIds = new Set<string>();
  const groupNames = new Set<string>();
  for (const group of plan.groups) {
    if (groupNames.has(group.name)) problems.push(`two groups are named ${group.name}`);
    groupNames.add(group.name);
    if (group.machines.length === 0) problems.push(`group ${group.name} has no machine`);
    for (const m of group.machines) {
      const machineName = nameProblem('machine', m);
      if (machineName) problems.push(`group ${group.name}: ${machineName}`);
      else if (!known.has(m)) problems.push(`group ${group.name}: ${m} is not a protected machine`);
      const other = seenIn.get(m);
      if (other !== undefined)
        problems.push(`${m} is in two groups (${other} and ${group.name}); a machine fails over once`);
      seenIn.set(m, group.name);
    }
    for (const action of [...group.pre, ...group.post]) {
      if (actionIds.has(action.id)) problems.push(`two actions have the id ${action.id}`);
      actionIds.add(action.id);
      if (!(action.timeoutSeconds > 0)) problems.push(`action ${action.id}: the timeout must be positive`);
      if (action.kind === 'script' && !action.command.trim())
        problems.push(`action ${action.id}: empty command`);
      if (action.kind === 'manual' && !['fail', 'continue'].includes(action.onTimeout))
        problems.push(`action ${action.id}: on timeout must be fail or continue`);
    }
  }
  const sources = new Set<string>();
  for (const n of plan.networks ?? []) {
    if (!n.source?.trim() || (!n.subnetId?.trim() && !n.libvirtNetwork?.trim()))
      problems.push(
        'a network mapping needs a source network and a subnetId (azure) or a libvirtNetwork (libvirt)',
      );
    else if (sources.has(n.source)) problems.push(`source network ${n.source} is mapped twice`);
    else if (
      n.drillSubnetId &&
      n.drillSubnetId.toLowerCase() === n.subnetId?.toLowerCase() &&
      !n.drillOnProductionSubnet
    )
      problems.push(
        `source network ${n.source}: its drill subnet is the production subnet; drills must be isolated (or say drillOnProductionSubnet)`,
      );
    sources.add(n.source);
  }
  return problems;
}
