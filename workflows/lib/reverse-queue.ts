// Which process-server queue reads the recovery-site copy during reprotect and failback: the
// recovery site's, or, for a domain recovered into libvirt, its recovery host's (a libvirt source
// is read by its host's process servers, as in forward replication). Gated with patched(): the
// marker is written only for a reverse source with a host, which no run before this change had,
// so older histories replay as they ran.
import { patched } from '@temporalio/workflow';
import { hostProcessServerQueue, processServerQueue } from '../../shared/task-queues';

export const PATCH_LIBVIRT_FAILBACK = 'libvirt-failback';

export function reverseSourceQueue(source: { site: string; host?: string }): string {
  return source.host && patched(PATCH_LIBVIRT_FAILBACK)
    ? hostProcessServerQueue(source.host)
    : processServerQueue(source.site);
}
