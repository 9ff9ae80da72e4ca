// The recovery-site process server's leftovers of reverse replication (its work folder, a libvirt
// backup's export folder) go when reverse replication is over for good: at the end of failback,
// and when reprotect is stopped. A new activity on paths earlier runs took, so gated with
// patched(): histories recorded before it replay as they ran.
import { patched } from '@temporalio/workflow';
import type { ProcessServerActivities } from '../../activities/process-server';
import type { ProtectedMachine } from '../../shared/replication-types';
import { messageOf } from './failures';

export const PATCH_REVERSE_CLEANUP = 'libvirt-failback-2';

/** False on a path recorded before the cleanup existed. */
export function reverseCleanupPatched(): boolean {
  return patched(PATCH_REVERSE_CLEANUP);
}

/**
 * Removes them; what it could not remove is reported, never fails the stage (the machine is
 * already where the stage put it).
 */
export async function forgetReverseSource(
  ps: Pick<ProcessServerActivities, 'forgetReverseSource'>,
  source: ProtectedMachine,
): Promise<string> {
  try {
    const { removed } = await ps.forgetReverseSource({ machine: source });
    return removed.length ? `removed ${removed.join(', ')}` : 'nothing left';
  } catch (err) {
    return `left behind: ${messageOf(err)}`;
  }
}
