// Which recovery point a selector names: `latest`, `latest-app`, a point id, the newest point at
// or before an ISO time, or a machine's point in a group point (`group:<group>[/<id>]`).
import { groupDocs, type GroupPoint } from '../shared/group-types';
import type { RecoveryPoint } from '../shared/replication-types';
import { checkName, checkPointSelector } from '../shared/names';
import { pointAtOrBefore } from '../shared/point-order';
import { OperationError, type ControlContext } from './context';
import { registeredMachine } from './machines';

/**
 * A machine's point in a group point: `group:<group>` (the group's newest) or
 * `group:<group>/<group point id>`. Failing a group's machines over from one group point recovers
 * a consistent cut of them all.
 */
async function groupMemberPoint(
  ctx: ControlContext,
  machine: string,
  selector: string,
  points: RecoveryPoint[],
): Promise<RecoveryPoint> {
  const [group = '', id] = selector.slice('group:'.length).split('/');
  const groupPoints = (await ctx.vault.list<GroupPoint>(groupDocs.points(group))).sort(
    (a, b) => a.cut - b.cut,
  );
  const groupPoint = id ? groupPoints.find((p) => p.id === id) : groupPoints[groupPoints.length - 1];
  if (!groupPoint)
    throw new OperationError(
      `group ${group} has no group point ${id ?? 'yet'}; see \`osr group points ${group}\``,
      'not-found',
    );
  const member = groupPoint.members.find((m) => m.machine === machine);
  const found = member && points.find((p) => p.id === member.pointId);
  if (!found)
    throw new OperationError(
      member
        ? `point ${member.pointId} of ${machine} (group point ${groupPoint.id}) is no longer in the catalog (pruned by retention)`
        : `machine ${machine} is not a member of group point ${groupPoint.id} of group ${group}`,
      'not-found',
    );
  return found;
}

/** Resolves `latest`, `latest-app`, a point id, "at or before" an ISO time, or `group:<group>[/<id>]`. */
export async function resolvePoint(
  ctx: ControlContext,
  machine: string,
  selector: string,
): Promise<RecoveryPoint> {
  checkName('machine', machine);
  checkPointSelector(selector);
  const points = await ctx.vault.points(machine);
  if (points.length === 0) {
    // Points outlive their machine's registration (unprotect --keep-replica); no points and no
    // registration means the name is wrong, not that the sync is slow.
    await registeredMachine(ctx, machine);
    throw new OperationError(
      `machine ${machine} has no recovery point yet (initial sync still running?)`,
      'not-found',
    );
  }
  let found: RecoveryPoint | undefined;
  if (selector.startsWith('group:')) return groupMemberPoint(ctx, machine, selector, points);
  // The catalog's order is the points' sequence (shared/point-order.ts), never a clock's.
  if (selector === 'latest') found = points[points.length - 1];
  else if (selector === 'latest-app') found = [...points].reverse().find((p) => p.kind === 'app');
  else if (/^\d{4}-\d{2}-\d{2}T/.test(selector) && !Number.isNaN(Date.parse(selector))) {
    found = pointAtOrBefore(points, Date.parse(selector));
  } else found = points.find((p) => p.id === selector);
  if (!found) {
    throw new OperationError(
      `machine ${machine} has no recovery point "${selector}"; use latest, latest-app, an ISO time, group:<group>[/<id>], or one of: ${points
        .slice(-5)
        .map((p) => p.id)
        .join(', ')}${points.length > 5 ? ' … (osr points ' + machine + ')' : ''}`,
      'not-found',
    );
  }
  return found;
}

const MAX_TAG_LENGTH = 128;

/** A point's tag is printed in tables and terminals: bounded, and no control characters. */
export function checkPointTag(tag: string | undefined): void {
  if (tag === undefined) return;
  if (tag.length === 0 || tag.length > MAX_TAG_LENGTH) {
    throw new OperationError(
      `a point tag has 1 to ${MAX_TAG_LENGTH} characters; this one has ${tag.length}`,
      'invalid',
    );
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(tag)) {
    throw new OperationError(
      'a point tag cannot contain control characters (escape sequences, newlines, tabs); use printable text',
      'invalid',
    );
  }
}
