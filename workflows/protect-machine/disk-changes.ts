// What freezePoint found changed in the machine's disks: alerts, new disks to sync in full, and
// disks left out of the point (vanished or shrunk) marked excluded until they are back.
import type { FrozenPoint } from '../../shared/replication-types';
import { diskChangesOf } from '../lib/disk-changes';
import { raise, type ProtectRun } from './run';

export function noteDiskChanges(run: ProtectRun, frozen: FrozenPoint): void {
  const { s } = run;
  for (const change of diskChangesOf(frozen)) {
    raise(
      run,
      change.kind,
      change.kind === 'disk-added' ? 'warning' : 'critical',
      change.message,
      change.diskId,
    );
  }
  for (const d of frozen.disks) {
    const known = s.disks.find((x) => x.diskId === d.diskId);
    if (!known) s.disks.push({ diskId: d.diskId, sizeBytes: d.sizeBytes, synced: false, nextMode: 'full' });
  }
  for (const known of s.disks) {
    if (!frozen.disks.some((d) => d.diskId === known.diskId))
      known.excluded = 'not in the last frozen point (see alerts)';
    else delete known.excluded;
  }
}
