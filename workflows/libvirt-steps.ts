// The libvirt target's steps of a recovery: the recovered images materialized as qcow2 (no daemon:
// the domain opens them), a domain defined and started on the recovery host from the protected
// domain's own definition, and a boot probe that waits for the guest to answer. Taken only when the
// machine's recovery settings say target libvirt, behind patched('libvirt-target'), so no older
// history reaches them.
import { proxyActivities } from '@temporalio/workflow';
import type { RecoveryActivities } from '../activities/cloud-applier';
import { FAILURE } from '../shared/failures';
import { recoveredDomainName, type LibvirtResources } from '../shared/libvirt-target';
import type { RecoveredDisk, RecoveredMachine, RecoverySettings } from '../shared/recovery-types';
import { CLOUD_APPLIER_TASK_QUEUE } from '../shared/task-queues';
import type { Tracker } from './recovery-steps';

/** Recovery into libvirt (a new path: only workflows started with target libvirt take it). */
export const LIBVIRT_TARGET_PATCH = 'libvirt-target';

// Its own proxy: a refusal (no kept definition, a foreign domain of the name) is never retried.
const lv = proxyActivities<RecoveryActivities>({
  taskQueue: CLOUD_APPLIER_TASK_QUEUE,
  startToCloseTimeout: '30m',
  heartbeatTimeout: '60s',
  retry: {
    initialInterval: '1s',
    maximumInterval: '20s',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [FAILURE.LibvirtTargetRefused],
  },
});

export async function recoverIntoLibvirt(
  t: Tracker,
  record: RecoveredMachine,
  input: { disks: RecoveredDisk[]; settings: RecoverySettings },
): Promise<void> {
  const { machine, job, kind } = record;
  const settings = input.settings.libvirt!;
  // Named before anything is made on the host, so a cleanup knows where to look.
  record.libvirt = {
    host: settings.recoveryHost,
    uri: settings.uri ?? '',
    domain: recoveredDomainName(machine, kind, job),
  };
  await lv.recordRecoveredMachine(record);
  const materialized = await t.step(
    'materialize',
    () =>
      lv.materializeRecovered({
        machine,
        job,
        disks: input.disks,
        settings: { format: 'qcow2' },
        serve: false,
      }),
    (m) => `qcow2 images in ${m.dir} for the libvirt domain`,
  );
  record.materialized = materialized;
  t.status.materialized = materialized;
  const made: LibvirtResources = await t.step(
    'libvirt domain',
    () => lv.libvirtDefineDomain({ kind, machine, job, settings, materialized }),
    (m) =>
      `${m.domain} defined and started on ${m.host}${m.drillNetwork ? `, NICs on the isolated network ${m.drillNetwork}` : ''}${m.dropped?.length ? `; left out: ${m.dropped.join(', ')}` : ''}`,
  );
  record.libvirt = made;
  t.status.libvirt = made;
  await lv.recordRecoveredMachine(record);
  made.probe = await t.step(
    'boot probe',
    () =>
      lv.libvirtProbeBoot({
        made,
        materialized,
        timeoutSeconds: settings.bootTimeoutSeconds,
        consolePattern: settings.consolePattern,
      }),
    (p) => `${p.ok ? 'answered' : 'FAILED'} (${p.how}, ${p.seconds} s): ${p.detail}`,
  );
}

/** Removes the domain and drill network this recovery made (by tag). */
export async function removeFromLibvirt(
  t: Tracker,
  input: { kind: 'drill' | 'failover'; machine: string; job: string },
): Promise<void> {
  await t.step(
    'remove libvirt domain',
    () => lv.libvirtRemove(input),
    (gone) => (gone.length ? `removed ${gone.join(', ')}` : 'nothing of this job left on the host'),
  );
}
