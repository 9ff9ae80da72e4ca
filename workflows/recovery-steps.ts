// What drills and failovers share: the job's status with timed steps (served by the status query,
// mirrored in the OsrState search attribute), and the recovery itself: disks from a point, then
// optionally materialized on the recovery-site QEMU host and boot-checked, recorded in the vault.
import {
  ApplicationFailure,
  log,
  patched,
  proxyActivities,
  setCurrentDetails,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { FAILURE } from '../shared/failures';
import type { RecoveryActivities } from '../activities/cloud-applier';
import type { RecoveredMachine, RecoveryKind, RecoverySettings } from '../shared/recovery-types';
import type { ProtectedMachine, RecoveryPoint } from '../shared/replication-types';
import { OSR_STATE } from '../shared/search-attributes';
import { CLOUD_APPLIER_TASK_QUEUE } from '../shared/task-queues';
import type { RecoveryJobState, RecoveryStatus } from '../shared/contracts/recovery-job';
import { messageOf } from './lib/failures';
import { WORKER_HEARTBEAT_TIMEOUT } from './lib/liveness';
import { runStep } from './lib/steps';
import { recoverIntoAzure } from './azure-steps';
import { LIBVIRT_TARGET_PATCH, recoverIntoLibvirt, removeFromLibvirt } from './libvirt-steps';

// Every recovery activity heartbeats on the 2-s timer: a killed applier's step goes on within seconds.
export const applier = proxyActivities<RecoveryActivities>({
  taskQueue: CLOUD_APPLIER_TASK_QUEUE,
  startToCloseTimeout: '30m',
  heartbeatTimeout: WORKER_HEARTBEAT_TIMEOUT,
  retry: {
    initialInterval: '1s',
    maximumInterval: '20s',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [FAILURE.PointImageMissing, FAILURE.AzureTargetRefused],
  },
});

export interface Tracker {
  status: RecoveryStatus;
  step<T>(name: string, run: () => Promise<T>, detail?: (result: T) => string | undefined): Promise<T>;
  skip(name: string, why: string): void;
  setState(state: RecoveryJobState): void;
}

export function createTracker(initial: Omit<RecoveryStatus, 'state' | 'disks' | 'steps'>): Tracker {
  const status: RecoveryStatus = { ...initial, state: 'running', disks: [], steps: [] };
  const now = () => new Date(Date.now()).toISOString();
  return {
    status,
    step: (name, run, detail) => runStep(status.steps, name, run, detail, showDetails),
    skip(name, why) {
      const at = now();
      status.steps.push({ name, state: 'skipped', startedAt: at, endedAt: at, detail: why });
    },
    setState(state) {
      status.state = state;
      upsertSearchAttributes([{ key: OSR_STATE, value: state }]);
      showDetails();
    },
  };

  /** The Temporal Web UI's current details: the job's state and the step it is in. */
  function showDetails(): void {
    const running = status.steps.filter((x) => x.state === 'running').map((x) => x.name);
    const done = status.steps.filter((x) => x.state === 'done').length;
    setCurrentDetails(
      `${status.state}${running.length ? ` · ${running.join(', ')}` : ''} · ${done}/${status.steps.length} steps done`,
    );
  }
}

export interface RecoverInput {
  kind: RecoveryKind;
  job: string;
  machine: ProtectedMachine;
  point: RecoveryPoint;
  settings?: RecoverySettings;
}

/** Builds the recovered machine from `point` and records it; fills the tracker's status. */
export async function recover(t: Tracker, input: RecoverInput): Promise<RecoveredMachine> {
  const { kind, job, point } = input;
  const machine = input.machine.name;
  t.status.point = { id: point.id, instant: point.instant, kind: point.kind };
  const disks = await t.step(
    'create disks',
    () => applier.createRecoveredDisks({ kind, machine, job, point }),
    (d) =>
      `${d.length} disk(s) copied server-side from point ${point.id}: ${d.map((x) => x.blob).join(', ')}`,
  );
  t.status.disks = disks;
  const record: RecoveredMachine = {
    machine,
    job,
    kind,
    point: t.status.point,
    disks,
    createdAt: new Date(Date.now()).toISOString(),
  };
  const settings = input.settings;
  const azure = settings?.target === 'azure' && patched(AZURE_TARGET_PATCH);
  // Named before anything is made in Azure, so a cleanup knows where to look.
  if (azure && settings.azure) record.azure = { resourceGroup: settings.azure.resourceGroup, disks: [] };
  // Recorded at once, so a cleanup finds the disks even if a later step fails.
  await t.step('record', () => applier.recordRecoveredMachine(record));
  if (azure) {
    record.azure = await recoverIntoAzure(t, {
      kind,
      job,
      machine: input.machine,
      pointId: point.id,
      disks,
      settings,
    });
    await applier.recordRecoveredMachine(record);
  }
  const libvirt = settings?.target === 'libvirt' && settings.libvirt && patched(LIBVIRT_TARGET_PATCH);
  if (libvirt) await recoverIntoLibvirt(t, record, { disks, settings });

  const materialize = input.settings?.materialize;
  // With the libvirt target the images are the domain's own (above): no daemon of OSR's may hold them.
  if (libvirt) t.status.libvirt = record.libvirt;
  else if (materialize) {
    record.materialized = await t.step(
      'materialize',
      () => applier.materializeRecovered({ machine, job, disks, settings: materialize }),
      (m) => `${m.format} disks in ${m.dir}, served by qemu-storage-daemon (QMP ${m.qmpSocket})`,
    );
    t.status.materialized = record.materialized;
  } else t.skip('materialize', 'not configured for this machine');

  const check = input.settings?.bootCheck;
  if (check) {
    record.bootCheck = await t.step(
      'boot check',
      () =>
        applier.runBootCheck({
          machine,
          job,
          pointId: point.id,
          check,
          disks: record.materialized
            ? record.materialized.files.map((f) => f.path)
            : disks.map((d) => d.blob),
          blobs: disks.map((d) => d.blob),
        }),
      (r) => (r.ok ? `booted (probe attempts: ${r.probeAttempts})` : `FAILED: ${r.reason}`),
    );
    t.status.bootCheck = record.bootCheck;
  } else t.skip('boot check', 'not configured for this machine');

  if (record.materialized || record.bootCheck || record.libvirt) await applier.recordRecoveredMachine(record);
  return record;
}

/** Recovery into Azure (a new path: only workflows started with target azure take it). */
export const AZURE_TARGET_PATCH = 'azure-target';

/**
 * Removes everything a recovery made: what it made in Azure (azure: by tag), the local copies and
 * daemon, then the disks, then the record.
 */
export async function teardown(
  t: Tracker,
  input: {
    kind: RecoveryKind;
    machine: string;
    job: string;
    keepRecord?: boolean;
    azure?: boolean;
    libvirt?: boolean;
  },
): Promise<string[]> {
  const { kind, machine, job } = input;
  // The domain first: it holds the images removed below.
  if (input.libvirt && patched(LIBVIRT_TARGET_PATCH)) await removeFromLibvirt(t, { kind, machine, job });
  if (input.azure && patched(AZURE_TARGET_PATCH))
    await t.step(
      'delete azure resources',
      () => applier.azureDeleteResources({ kind, machine, job }),
      (gone) => (gone.length ? `deleted ${gone.join(', ')}` : 'nothing of this job left in Azure'),
    );
  await t.step('stop local copies', () => applier.dematerializeRecovered({ machine, job }));
  const deleted = await t.step(
    'delete disks',
    () => applier.deleteRecoveredDisks({ kind, machine, job }),
    (names) => (names.length ? `deleted ${names.join(', ')}` : 'no disk left to delete'),
  );
  if (!input.keepRecord) await t.step('remove record', () => applier.removeRecoveredRecord({ machine, job }));
  return deleted;
}

/** A failure for the caller of the workflow or update, with the reason only. */
export function failed(t: Tracker, err: unknown): ApplicationFailure {
  t.status.error = messageOf(err);
  log.warn('recovery job failed', { job: t.status.job, error: t.status.error });
  return ApplicationFailure.create({
    type: FAILURE.RecoveryFailed,
    message: t.status.error,
    nonRetryable: true,
  });
}
