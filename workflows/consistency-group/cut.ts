// One group cut: every member finishes what it is doing and says ready, the members' writes are
// held, every member freezes its disks, writes are released (as soon as the last member is frozen,
// at most FREEZE_TIMEOUT later), members publish, and the group point is written to the catalog.
import {
  CancellationScope,
  condition,
  log,
  patched,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { cutDecisionSignal, groupCutSignal } from '../../shared/contracts/consistency-group';
import type { HeldMachine } from '../../shared/group-types';
import { OSR_LAST_POINT, OSR_RPO_SECONDS } from '../../shared/search-attributes';
import { messageOf } from '../lib/failures';
import { pointId } from '../lib/points';
import { holdMembers, releaseMembers, type QueueHold } from './hold-routing';
import { alert, member, rpoSeconds, setPhase, type GroupRun } from './run';

/** Members finish a cycle in progress before they are ready; longer than that is a stuck member. */
const READY_TIMEOUT = '10 minutes';
/** Writes stay held at most this long, whatever happens to a member's freeze. */
const FREEZE_TIMEOUT = '60 seconds';
const PUBLISH_TIMEOUT = '2 hours';

export async function cutOnce(run: GroupRun): Promise<void> {
  const { s, group, barrier, control, requests } = run;
  run.cutsThisRun += 1;
  s.cut += 1;
  run.currentCut = s.cut;
  run.reports = new Map();
  const cut = s.cut;
  const names = group.machines;
  const phaseOf = (m: string) => run.reports.get(m)?.phase;
  const failures = () =>
    names.flatMap((m) =>
      phaseOf(m) === 'failed' ? [`${m}: ${run.reports.get(m)?.reason ?? 'failed'}`] : [],
    );

  setPhase(run, 'waiting-for-members');
  await Promise.all(
    names.map((m) =>
      member(m)
        .signal(groupCutSignal, { group: group.name, cut, groupWorkflowId: workflowInfo().workflowId })
        .catch(() => {
          run.reports.set(m, {
            cut,
            machine: m,
            phase: 'failed',
            reason: 'its protectMachine workflow is not running',
          });
        }),
    ),
  );
  await condition(() => names.every((m) => phaseOf(m) !== undefined), READY_TIMEOUT);
  const notReady = names.filter((m) => phaseOf(m) !== 'ready');
  if (notReady.length) {
    await decide(run, cut, false);
    return skipped(
      run,
      `cut ${cut} skipped: not every member was ready (${[...failures(), ...notReady.filter((m) => !phaseOf(m)).map((m) => `${m}: no answer`)].join('; ')})`,
    );
  }

  let held: HeldMachine[] = [];
  let heldAt = 0;
  let startedAt = 0;
  let holds: QueueHold[] = [];
  if (barrier) {
    setPhase(run, 'holding-writes');
    try {
      const machines = await control.membersOf({ machines: names });
      ({ holds, held, heldAt, startedAt } = await holdMembers(run, machines));
    } catch (err) {
      await decide(run, cut, false);
      return failed(run, `cut ${cut}: could not hold the members' writes: ${messageOf(err)}`);
    }
  }
  let releasedAt = 0;
  let notHeld: string[] = [];
  try {
    setPhase(run, 'freezing');
    const settled = (m: string) => ['frozen', 'failed', 'published'].includes(phaseOf(m) ?? '');
    if (barrier) {
      await decide(run, cut, true, names);
      await condition(() => names.every(settled), FREEZE_TIMEOUT);
    } else {
      // Without a barrier, members are frozen one after the other, as separate snapshots would be.
      for (const m of names) {
        await decide(run, cut, true, [m]);
        await condition(() => settled(m), FREEZE_TIMEOUT);
      }
    }
  } finally {
    if (barrier) {
      setPhase(run, 'releasing');
      const released = await CancellationScope.nonCancellable(() => releaseMembers(holds));
      releasedAt = released.releasedAt;
      notHeld = released.notHeld ?? []; // absent from releases recorded before agents could hold
    }
  }
  const barrierMs = barrier ? releasedAt - startedAt : 0;
  // A Mobility agent lets held writes go by itself after its limit: its point may then hold writes
  // from after the others' cut.
  if (notHeld.length && patched('agent-group')) {
    return failed(
      run,
      `cut ${cut}: writes were not held until every member had frozen (${notHeld.join('; ')}); the points of this cut are not a group point`,
    );
  }
  const notFrozen = names.filter((m) => phaseOf(m) !== 'frozen' && phaseOf(m) !== 'published');
  if (notFrozen.length) {
    return failed(
      run,
      `cut ${cut}: not every member froze its disks while writes were held (${notFrozen.map((m) => `${m}: ${run.reports.get(m)?.reason ?? 'no answer within 60 s'}`).join('; ')}); their points of this cut are not a group point`,
    );
  }

  setPhase(run, 'publishing');
  await condition(
    () => names.every((m) => phaseOf(m) === 'published' || phaseOf(m) === 'failed'),
    PUBLISH_TIMEOUT,
  );
  if (!names.every((m) => phaseOf(m) === 'published')) {
    return failed(
      run,
      `cut ${cut}: not every member published its point (${failures().join('; ') || 'timed out'})`,
    );
  }
  const instant = barrier
    ? new Date(heldAt).toISOString()
    : (names.map((m) => run.reports.get(m)?.instant as string).sort()[0] as string);
  const point = await control.publishGroupPoint({
    id: pointId(instant, `g${cut}`),
    group: group.name,
    cut,
    instant,
    members: names.map((m) => ({
      machine: m,
      pointId: run.reports.get(m)?.pointId as string,
      instant: run.reports.get(m)?.instant as string,
    })),
    barrierMs,
    methods: held,
    consistent: barrier,
    createdAt: new Date(Date.now()).toISOString(),
  });
  setPhase(run, undefined);
  s.stats.cuts += 1;
  s.lastPoint = { id: point.id, instant: point.instant, barrierMs, consistent: point.consistent };
  if (barrier) {
    const b = s.barrier ?? { last: 0, max: 0, mean: 0, count: 0 };
    s.barrier = {
      last: barrierMs,
      max: Math.max(b.max, barrierMs),
      mean: Math.round((b.mean * b.count + barrierMs) / (b.count + 1)),
      count: b.count + 1,
    };
  }
  s.alerts = [];
  for (const r of requests) if (!r.done && !r.failed) r.done = point;
  requests.splice(0, requests.length);
  upsertSearchAttributes([
    { key: OSR_LAST_POINT, value: new Date(Date.parse(point.instant)) },
    { key: OSR_RPO_SECONDS, value: rpoSeconds(run) ?? 0 },
  ]);
  log.info('group point', { group: group.name, cut, barrierMs });
}

async function decide(run: GroupRun, cut: number, go: boolean, machines = run.group.machines): Promise<void> {
  // A member gone meanwhile cannot be told; it is reported as not frozen.
  await Promise.all(
    machines.map((m) =>
      member(m)
        .signal(cutDecisionSignal, { cut, go })
        .catch(() => undefined),
    ),
  );
}

function skipped(run: GroupRun, message: string): void {
  run.s.stats.skipped += 1;
  alert(run, 'cut-skipped', 'warning', message);
}

function failed(run: GroupRun, message: string): void {
  run.s.stats.failed += 1;
  alert(run, 'cut-failed', 'critical', message);
}
