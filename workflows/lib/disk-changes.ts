// Disk changes a freeze reported (FrozenPoint.warnings), read the same way by forward and reverse
// replication. Replay safety: histories recorded before warnings were data hold plain strings in
// freezePoint's results; those are read as before, kind and disk from the prose.
import type { DiskChangeWarning } from '../../shared/replication-types';

/** A disk change as data, from the data or from a recorded prose warning. */
export function diskChangeOf(warning: DiskChangeWarning | string): DiskChangeWarning {
  if (typeof warning !== 'string') return warning;
  const kind = warning.startsWith('tracking lost')
    ? 'resync-needed'
    : warning.includes('shrank')
      ? 'disk-shrunk'
      : warning.includes('vanished')
        ? 'disk-vanished'
        : 'disk-added';
  // The disk a warning is about leads it ("tracking lost on <disk> …", "<disk> vanished …").
  const diskId = (kind === 'resync-needed' ? warning.split(' ')[3] : warning.split(' ')[0]) as string;
  return { kind, diskId, message: warning };
}

/** The disk changes of a freeze's result, whichever shape it was recorded in. */
export function diskChangesOf(frozen: {
  warnings: ReadonlyArray<DiskChangeWarning | string>;
}): DiskChangeWarning[] {
  return frozen.warnings.map(diskChangeOf);
}
