// The alert that says replication goes on after trouble: a point published after failed cycles
// (the source did not answer: an agent cut off, a machine down) or after a resync by checksums
// (tracking lost: a crash). The alerts of the trouble clear with this point; this one tells the
// operator what happened and stays a while (informational: health does not count it).
import { patched } from '@temporalio/workflow';
import type { FrozenPoint, RecoveryPoint } from '../../shared/replication-types';
import { clear, nowIso, raise, type ProtectRun } from './run';

/** patched() id: runs that raise replication-resumed (older runs only cleared the alerts). */
const PATCH_AGENT_RESILIENCE = 'agent-resilience';
/** How long the alert stays: cleared by the first point published this long after it. */
export const RESUMED_ALERT_MS = 10 * 60_000;

/** Called once `published` is in the catalog, before the trouble's alerts are cleared. */
export function noteResumed(run: ProtectRun, frozen: FrozenPoint, published: RecoveryPoint): void {
  const { s, machine } = run;
  const standing = s.alerts.find((a) => a.kind === 'replication-resumed');
  if (standing && Date.now() - Date.parse(standing.lastAt ?? standing.at) >= RESUMED_ALERT_MS)
    clear(run, 'replication-resumed');
  const resynced = frozen.disks.filter((d) => d.mode === 'resync').map((d) => d.diskId);
  if (!s.failing && resynced.length === 0) return;
  if (!patched(PATCH_AGENT_RESILIENCE)) return;
  const parts: string[] = [];
  if (s.failing) {
    const unreachable = s.alerts.find((a) => a.kind === 'source-unreachable');
    const seconds = Math.round((Date.now() - Date.parse(s.failing.since)) / 1000);
    parts.push(
      `after ${s.failing.failures} failed cycle(s) over ${seconds} s since ${s.failing.since}` +
        (unreachable ? ` (the source did not answer: ${unreachable.message})` : ` (${s.failing.reason})`),
    );
  }
  for (const diskId of resynced) {
    const lost = s.alerts.find((a) => a.kind === 'resync-needed' && a.subject === diskId);
    parts.push(`${diskId} resynchronized by checksums${lost ? ` (${lost.message})` : ''}`);
  }
  raise(
    run,
    'replication-resumed',
    'warning',
    `replication of ${machine.name} resumed at ${nowIso()} with point ${published.id}: ${parts.join('; ')}`,
  );
}
