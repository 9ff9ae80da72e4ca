// Names and tags of what a recovery makes in Azure. Names are derived from the machine and job, so
// a retried create addresses the same resource; tags say which job made it, so a cleanup deletes
// exactly that job's resources and a create never adopts someone else's.
import { createHash } from 'node:crypto';

export interface RecoveryRef {
  machine: string;
  job: string;
  kind: 'drill' | 'failover';
}

export const TAG = {
  machine: 'osr-machine',
  job: 'osr-job',
  kind: 'osr-kind',
  point: 'osr-point',
  disk: 'osr-disk',
} as const;

export function recoveryTags(ref: RecoveryRef, extra: Record<string, string> = {}): Record<string, string> {
  return { [TAG.machine]: ref.machine, [TAG.job]: ref.job, [TAG.kind]: ref.kind, ...extra };
}

/** Whether a resource's tags say this recovery made it. */
export function madeBy(tags: Record<string, string> | undefined, ref: RecoveryRef): boolean {
  return tags?.[TAG.machine] === ref.machine && tags?.[TAG.job] === ref.job && tags?.[TAG.kind] === ref.kind;
}

/** `osr-<machine>-<job>[-<suffix>]`, shortened with a hash of the whole when past `max` (VM names: 64). */
function armName(ref: RecoveryRef, suffix: string | undefined, max: number): string {
  const kind = ref.kind === 'drill' ? 'test-' : '';
  const full = `osr-${kind}${ref.machine}-${ref.job}${suffix ? `-${suffix}` : ''}`;
  if (full.length <= max) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 10);
  return `${full.slice(0, max - 11)}-${hash}`;
}

export const names = {
  disk: (ref: RecoveryRef, diskId: string) => armName(ref, diskId, 80),
  nic: (ref: RecoveryRef) => armName(ref, 'nic', 80),
  vm: (ref: RecoveryRef) => armName(ref, undefined, 64),
};
