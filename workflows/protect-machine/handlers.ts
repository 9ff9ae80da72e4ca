// protectMachine's query, signals and updates. Validators refuse what cannot apply now, with the
// reason, before anything changes; handlers change the run's state and wake the loop.
import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import {
  changePolicyUpdate,
  disableUpdate,
  pauseUpdate,
  resumeUpdate,
  resyncUpdate,
  statusQuery,
  takePointUpdate,
} from '../../shared/contracts/protect-machine';
import { cutDecisionSignal, groupCutSignal, setGroupSignal } from '../../shared/contracts/consistency-group';
import { FAILURE } from '../../shared/failures';
import type { RecoveryPoint } from '../../shared/replication-types';
import { refuseUnless, setState, status, type PointRequestEntry, type ProtectRun } from './run';

export function setHandlers(run: ProtectRun): void {
  const { s, machine } = run;
  setHandler(statusQuery, () => status(run));
  // Consistency groups (see consistency-group-api.ts for the protocol).
  setHandler(setGroupSignal, ({ group }) => {
    s.group = group ?? undefined;
    run.wake = true;
  });
  setHandler(groupCutSignal, (cut) => {
    run.pendingCut = cut;
    run.wake = true;
  });
  setHandler(cutDecisionSignal, (decision) => {
    run.cutDecision = decision;
  });
  setHandler(
    pauseUpdate,
    (_request) => {
      s.pausedFrom = s.state;
      setState(run, 'paused');
      run.wake = true;
      return status(run);
    },
    { validator: (_request) => refuseUnless(run, ['initial-sync', 'protected', 'resyncing'], 'pause') },
  );
  setHandler(
    resumeUpdate,
    () => {
      setState(run, s.pausedFrom ?? 'protected');
      s.pausedFrom = undefined;
      run.wake = true;
      return status(run);
    },
    { validator: () => refuseUnless(run, ['paused'], 'resume') },
  );
  setHandler(
    resyncUpdate,
    () => {
      for (const d of s.disks) if (!d.excluded) d.nextMode = d.synced ? 'resync' : 'full';
      run.wake = true;
      return status(run);
    },
    { validator: () => refuseUnless(run, ['initial-sync', 'protected', 'resyncing', 'paused'], 'resync') },
  );
  setHandler(
    changePolicyUpdate,
    (policy) => {
      s.policy = policy;
      run.wake = true;
      return status(run);
    },
    {
      validator: (_policy) =>
        refuseUnless(
          run,
          ['enabling', 'initial-sync', 'protected', 'resyncing', 'paused'],
          'change the policy of',
        ),
    },
  );
  setHandler(
    disableUpdate,
    async (options) => {
      run.keepReplica = options.keepReplica ?? false;
      setState(run, 'disabling');
      run.wake = true;
      await condition(() => s.state === 'disabled');
      return status(run);
    },
    {
      validator: (_options) =>
        refuseUnless(run, ['enabling', 'initial-sync', 'protected', 'resyncing', 'paused'], 'disable'),
    },
  );
  setHandler(
    takePointUpdate,
    async (request) => {
      const entry: PointRequestEntry = { request };
      run.pointRequests.push(entry);
      run.wake = true;
      await condition(() => entry.done !== undefined || entry.failed !== undefined);
      if (entry.failed)
        throw ApplicationFailure.create({
          type: FAILURE.PointFailed,
          message: entry.failed,
          nonRetryable: true,
        });
      const p = entry.done as RecoveryPoint;
      return { id: p.id, instant: p.instant, kind: p.kind };
    },
    {
      validator: (request) => {
        refuseUnless(run, ['initial-sync', 'protected', 'resyncing'], 'take a point of');
        if (request.kind === 'app' && !run.canQuiesce) {
          throw new Error(
            `machine ${machine.name} has no quiesce commands, so no app-consistent point can be cut; take a crash-consistent one, or protect it again with --guest-agent or --pre/--post`,
          );
        }
        if (request.kind !== 'crash' && request.kind !== 'app')
          throw new Error(`kind must be "crash" or "app", not "${String(request.kind)}"`);
      },
    },
  );
}
