// Numbered records written inside an agent machine (to its tracked disk, each with fsync), and the
// check that a point holds exactly records 1..k, each at its own sector. Shared by the agent tests.
import assert from 'node:assert/strict';
import type { ControlContext } from '../../operations/context';
import type { RecoveryPoint } from '../../shared/replication-types';
import { exportedImage } from './protection';
import { recordsIn } from './test-vm';

/**
 * A shell loop writing record n at sector base + n of /dev/mapper/osr-<disk>; /tmp/acked holds the
 * newest the disk acknowledged. It stops (touching /tmp/stopped) once /tmp/stop exists.
 */
export function recordWorkload(base: number, disk = 'vdb'): string {
  return `n=$(cat /tmp/acked 2>/dev/null || echo 0)
while [ ! -e /tmp/stop ]; do
  n=$((n + 1))
  if printf 'OSR-RECORD %010d agent\\n' $n | dd of=/dev/mapper/osr-${disk} bs=512 seek=$((${base} + n)) count=1 conv=sync,fsync 2>/dev/null
  then echo $n > /tmp/acked.new && mv /tmp/acked.new /tmp/acked
  else n=$((n - 1)); sleep 1
  fi
done
touch /tmp/stopped`;
}

/**
 * A shell loop rewriting `count` MiB of /dev/mapper/osr-<disk> from MiB `seek` without pause (each
 * pass with fsync), so every point's copy-on-write store needs that much while the point is read.
 * It counts passes in /tmp/burst-passes, appends any failed write's error to /tmp/burst-failed, and
 * stops (touching /tmp/burst-stopped) once /tmp/burst-stop exists. /tmp is in the guest's RAM.
 */
export function rewriteLoop(disk: string, seek: number, count: number): string {
  return `rm -f /tmp/burst-stop /tmp/burst-stopped /tmp/burst-failed; : >/tmp/burst-passes
while [ ! -e /tmp/burst-stop ]; do
  if dd if=/dev/zero of=/dev/mapper/osr-${disk} bs=1M seek=${seek} count=${count} conv=fsync 2>/tmp/burst-error
  then echo . >>/tmp/burst-passes; else cat /tmp/burst-error >>/tmp/burst-failed; sleep 1; fi
done
touch /tmp/burst-stopped`;
}

/** The number of records in a point's disk; asserts they are 1..k, each at its own sector. */
export async function recordsOf(
  ctx: ControlContext,
  point: RecoveryPoint,
  base: number,
  disk = 'vdb',
): Promise<number> {
  const image = await exportedImage(ctx, point, disk);
  const found = recordsIn(image);
  for (const { sector, record } of found)
    assert.equal(sector, base + record, `point ${point.id}: record ${record} at sector ${sector}`);
  const numbers = found.map((f) => f.record).sort((a, b) => a - b);
  numbers.forEach((n, i) =>
    assert.equal(n, i + 1, `point ${point.id}: records are not 1..k (${numbers.join(',')})`),
  );
  return numbers.length;
}
