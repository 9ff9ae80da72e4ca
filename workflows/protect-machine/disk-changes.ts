// What freezePoint found changed in the machine's disks: alerts, new disks to sync in full, and
// disks left out of the point (vanished or shrunk) marked excluded until they are back.
import type { FrozenPoint } from '../../shared/replication-types';
import { raise, type ProtectRun } from './run';

export function noteDiskChanges(run: ProtectRun, frozen: FrozenPoint): void {
  const { s } = run;
  for (const warning of frozen.warnings) {
    const kind = warning.startsWith('tracking lost')
      ? 'resync-needed'
      : warning.includes('shrank')
        ? 'disk-shrunk'
        : warning.includes('vanished')
          ? 'disk-vanished'
          : 'disk-added';
    // The disk a warning is about leads it ("tracking lost on <disk> …", "<disk> vanished …").
    const subject = kind === 'resync-needed' ? warning.split(' ')[3] : warning.split(' ')[0];
    raise(run, kind, kind === 'disk-added' ? 'warning' : 'critical', warning, subject);
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
