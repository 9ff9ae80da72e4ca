// consistencyGroup: the entity workflow of a multi-VM consistency group (id `group/<name>`). Every
// interval it cuts one group point: it asks each member's protectMachine to finish what it is
// doing and wait, holds every member's writes (process-server activity), lets all members freeze
// their disks, releases the writes as soon as the last one is frozen, and once every member's point
// is published writes the group point to the catalog. Barrier lengths are measured and reported.
import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { FAILURE } from '../shared/failures';
import type { ControlActivities } from '../activities/control';
import type { ProcessServerActivities } from '../activities/process-server';
import type { GroupPoint, HeldMachine } from '../shared/group-types';
import type { ProtectedMachine } from '../shared/replication-types';
import { OSR_LAST_POINT, OSR_RPO_SECONDS, OSR_STATE } from '../shared/search-attributes';
import { CONTROL_TASK_QUEUE, processServerQueue } from '../shared/task-queues';
import {
  cutDecisionSignal,
  disableGroupUpdate,
  groupCutSignal,
  groupStatusQuery,
  memberReportSignal,
  setGroupSignal,
  setIntervalUpdate,
  takeGroupPointUpdate,
  type GroupAlert,
  type GroupInput,
  type GroupState,
  type GroupStatus,
  type MemberReport,
} from '../shared/contracts/consistency-group';
import { protectWorkflowId } from '../shared/contracts/protect-machine';
import { messageOf } from './lib/failures';

const CUTS_PER_RUN = 200;
const MAX_HISTORY_EVENTS = 5000;
const MAX_ALERTS = 50;
/** Members finish a cycle in progress before they are ready; longer than that is a stuck member. */
const READY_TIMEOUT = '10 minutes';
/** Writes stay held at most this long, whatever happens to a member's freeze. */
const FREEZE_TIMEOUT = '60 seconds';
const PUBLISH_TIMEOUT = '2 hours';

export async function consistencyGroup(input: GroupInput): Promise<GroupStatus> {
  const { group } = input;
  const barrier = input.barrier ?? true;
  const s: GroupState = input.carried ?? {
    state: 'starting',
    intervalSeconds: group.intervalSeconds,
    cut: 0,
    alerts: [],
    alertSeq: 0,
    stats: { cuts: 0, skipped: 0, failed: 0 },
  };

  const ps = proxyActivities<ProcessServerActivities>({
    taskQueue: processServerQueue(group.site),
    startToCloseTimeout: '2m',
    retry: {
      initialInterval: '1s',
      maximumInterval: '10s',
      maximumAttempts: 5,
      nonRetryableErrorTypes: [FAILURE.NoWriteBarrier],
    },
  });
  // Releasing writes must happen: retried until it does.
  const release = proxyActivities<ProcessServerActivities>({
    taskQueue: processServerQueue(group.site),
    startToCloseTimeout: '2m',
    retry: { initialInterval: '500ms', maximumInterval: '10s' },
  });
  const control = proxyActivities<ControlActivities>({
    taskQueue: CONTROL_TASK_QUEUE,
    startToCloseTimeout: '1m',
  });

  let phase: GroupStatus['phase'];
  let reports = new Map<string, MemberReport>();
  let currentCut = 0;
  let wake = false;
  let cutsThisRun = 0;
  const requests: Array<{ done?: GroupPoint; failed?: string }> = [];

  /** The cut's phase, also shown as the workflow's current details in the Temporal Web UI. */
  function setPhase(next: GroupStatus['phase']): void {
    phase = next;
    const last = s.lastPoint
      ? `last point ${s.lastPoint.id}, writes held ${s.lastPoint.barrierMs} ms`
      : 'no point yet';
    setCurrentDetails(
      `${s.state} · ${group.machines.join(', ')} · ${next ? `cut ${s.cut}: ${next}` : 'idle'} · ${last}`,
    );
  }

  const rpoSeconds = () =>
    s.lastPoint ? Math.max(0, Math.round((Date.now() - Date.parse(s.lastPoint.instant)) / 1000)) : undefined;
  const status = (): GroupStatus => ({
    ...s,
    group: group.name,
    machines: group.machines,
    phase,
    rpoSeconds: rpoSeconds(),
  });

  setHandler(groupStatusQuery, status);
  setHandler(memberReportSignal, (r) => {
    if (r.cut !== currentCut) return; // a late answer about an earlier cut
    // Keep the furthest phase: signals of one member arrive in order, but be safe.
    reports.set(r.machine, r);
  });
  setHandler(
    takeGroupPointUpdate,
    async () => {
      const request: (typeof requests)[number] = {};
      requests.push(request);
      wake = true;
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
      wake = true;
      return status();
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
      wake = true;
      await condition(() => s.state === 'disabled');
      return status();
    },
    { validator: () => refuseUnlessActive('disable') },
  );
  function refuseUnlessActive(action: string): void {
    if (s.state !== 'active') throw new Error(`cannot ${action} group ${group.name} while it is ${s.state}`);
  }

  if (s.state === 'starting') {
    // A member whose writes cannot be held would make every cut a lie: refuse the group.
    if (barrier) {
      for (const machine of await control.membersOf({ machines: group.machines })) {
        try {
          await ps.checkWriteBarrier({ machine });
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

  const historyIsLong = () =>
    cutsThisRun >= (input.maxCutsPerRun ?? CUTS_PER_RUN) ||
    workflowInfo().continueAsNewSuggested ||
    workflowInfo().historyLength > MAX_HISTORY_EVENTS;
  const pendingRequests = () => requests.some((r) => !r.done && !r.failed);

  while (s.state === 'active') {
    if (historyIsLong() && !pendingRequests()) {
      await condition(() => allHandlersFinished() || pendingRequests() || s.state !== 'active');
      if (s.state === 'active' && !pendingRequests()) {
        await continueAsNew<typeof consistencyGroup>({ ...input, carried: s });
      }
      continue;
    }
    const due = (s.lastCutAt ?? 0) + s.intervalSeconds * 1000;
    if (pendingRequests() || Date.now() >= due) {
      s.lastCutAt = Date.now();
      await cutOnce();
      continue;
    }
    wake = false;
    await condition(() => wake, Math.max(1, due - Date.now()));
  }
  // Leave: members go back to cutting points on their own policy.
  for (const r of requests) if (!r.done) r.failed = `group ${group.name} is being disabled`;
  for (const m of group.machines)
    await member(m)
      .signal(setGroupSignal, { group: null })
      .catch(() => undefined);
  s.state = 'disabled';
  upsertSearchAttributes([{ key: OSR_STATE, value: s.state }]);
  return status();

  async function cutOnce(): Promise<void> {
    cutsThisRun += 1;
    s.cut += 1;
    currentCut = s.cut;
    reports = new Map();
    const cut = s.cut;
    const names = group.machines;
    const phaseOf = (m: string) => reports.get(m)?.phase;
    const failures = () =>
      names.flatMap((m) => (phaseOf(m) === 'failed' ? [`${m}: ${reports.get(m)?.reason ?? 'failed'}`] : []));

    setPhase('waiting-for-members');
    await Promise.all(
      names.map((m) =>
        member(m)
          .signal(groupCutSignal, { group: group.name, cut, groupWorkflowId: workflowInfo().workflowId })
          .catch(() => {
            reports.set(m, {
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
      await decide(cut, false);
      return skipped(
        `cut ${cut} skipped: not every member was ready (${[...failures(), ...notReady.filter((m) => !phaseOf(m)).map((m) => `${m}: no answer`)].join('; ')})`,
      );
    }

    let held: HeldMachine[] = [];
    let heldAt = 0;
    let startedAt = 0;
    const machines: ProtectedMachine[] = [];
    if (barrier) {
      setPhase('holding-writes');
      try {
        const members = await control.membersOf({ machines: names });
        machines.push(...members);
        const hold = await ps.holdWrites({ machines });
        held = hold.held;
        heldAt = hold.heldAt;
        startedAt = hold.startedAt;
      } catch (err) {
        await decide(cut, false);
        return failed(`cut ${cut}: could not hold the members' writes: ${messageOf(err)}`);
      }
    }
    let releasedAt = 0;
    try {
      setPhase('freezing');
      const settled = (m: string) => ['frozen', 'failed', 'published'].includes(phaseOf(m) ?? '');
      if (barrier) {
        await decide(cut, true, names);
        await condition(() => names.every(settled), FREEZE_TIMEOUT);
      } else {
        // Without a barrier, members are frozen one after the other, as separate snapshots would be.
        for (const m of names) {
          await decide(cut, true, [m]);
          await condition(() => settled(m), FREEZE_TIMEOUT);
        }
      }
    } finally {
      if (barrier) {
        setPhase('releasing');
        releasedAt = (await CancellationScope.nonCancellable(() => release.releaseWrites({ machines, held })))
          .releasedAt;
      }
    }
    const barrierMs = barrier ? releasedAt - startedAt : 0;
    const notFrozen = names.filter((m) => phaseOf(m) !== 'frozen' && phaseOf(m) !== 'published');
    if (notFrozen.length) {
      return failed(
        `cut ${cut}: not every member froze its disks while writes were held (${notFrozen.map((m) => `${m}: ${reports.get(m)?.reason ?? 'no answer within 60 s'}`).join('; ')}); their points of this cut are not a group point`,
      );
    }

    setPhase('publishing');
    await condition(
      () => names.every((m) => phaseOf(m) === 'published' || phaseOf(m) === 'failed'),
      PUBLISH_TIMEOUT,
    );
    if (!names.every((m) => phaseOf(m) === 'published')) {
      return failed(
        `cut ${cut}: not every member published its point (${failures().join('; ') || 'timed out'})`,
      );
    }
    const instant = barrier
      ? new Date(heldAt).toISOString()
      : (names.map((m) => reports.get(m)?.instant as string).sort()[0] as string);
    const point = await control.publishGroupPoint({
      id: `${instant.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-g${cut}`,
      group: group.name,
      cut,
      instant,
      members: names.map((m) => ({
        machine: m,
        pointId: reports.get(m)?.pointId as string,
        instant: reports.get(m)?.instant as string,
      })),
      barrierMs,
      methods: held,
      consistent: barrier,
      createdAt: new Date(Date.now()).toISOString(),
    });
    setPhase(undefined);
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
      { key: OSR_RPO_SECONDS, value: rpoSeconds() ?? 0 },
    ]);
    log.info('group point', { group: group.name, cut, barrierMs });
  }

  async function decide(cut: number, go: boolean, machines = group.machines): Promise<void> {
    // A member gone meanwhile cannot be told; it is reported as not frozen.
    await Promise.all(
      machines.map((m) =>
        member(m)
          .signal(cutDecisionSignal, { cut, go })
          .catch(() => undefined),
      ),
    );
  }

  function skipped(message: string): void {
    s.stats.skipped += 1;
    alert('cut-skipped', 'warning', message);
  }

  function failed(message: string): void {
    s.stats.failed += 1;
    alert('cut-failed', 'critical', message);
  }

  function alert(kind: GroupAlert['kind'], severity: GroupAlert['severity'], message: string): void {
    setPhase(undefined);
    s.alertSeq += 1;
    s.alerts.push({
      id: `${group.name}-${s.alertSeq}`,
      at: new Date(Date.now()).toISOString(),
      severity,
      kind,
      message,
    });
    if (s.alerts.length > MAX_ALERTS) s.alerts.splice(0, s.alerts.length - MAX_ALERTS);
    for (const r of requests) if (!r.done && !r.failed) r.failed = message;
    requests.splice(0, requests.length);
    log.warn('group alert', { group: group.name, kind, message });
  }
}

function member(machine: string) {
  return getExternalWorkflowHandle(protectWorkflowId(machine));
}
