// An agent machine's point-store alerts as its last freeze reported them, kept on the workflow's
// alerts so that its health and the OsrHealth search attribute count them. The control plane
// shows the agent's own, fresher copy instead of this one (operations/health.ts).
import { patched } from '@temporalio/workflow';
import type { FrozenPoint } from '../../shared/replication-types';
import { clear, raise, type ProtectRun } from './run';

const KINDS = ['agent-store-low', 'agent-store-full'] as const;
/**
 * patched() id: runs that keep the reported alerts. A process server upgraded first returns them
 * to workflow code that ignored them; replayed on this code, those histories must still ignore them.
 */
const PATCH_STORE_ALERTS = 'agent-store-health';

export function noteStoreAlerts(run: ProtectRun, frozen: FrozenPoint): void {
  // Absent: not an agent machine, or a process server from before freezes reported them.
  if (!frozen.storeAlerts || !patched(PATCH_STORE_ALERTS)) return;
  for (const kind of KINDS) {
    const now = frozen.storeAlerts.find((a) => a.kind === kind);
    const standing = run.s.alerts.find((a) => a.kind === kind);
    // Raised again only when its words changed (the free space it names), not every cycle.
    if (now && standing?.message !== now.message) raise(run, kind, now.severity, now.message, now.subject);
    else if (!now && standing) clear(run, kind);
  }
}
