// A frozen point's instant on Temporal's clock, not the primary host's: the workflow's time before
// and after the freeze bound the true freeze, so a primary clock outside that window is skewed.
// It raises the clock-skew alert (cleared by a freeze back in range) and the point is labelled by
// Temporal's time; the primary's reading is kept as the point's source clock.
import { patched } from '@temporalio/workflow';
import { CLOCK_SKEW_ALERT_MS, placeInstant } from '../../shared/point-order';
import type { FrozenPoint } from '../../shared/replication-types';
import { clear, raise, type ProtectRun } from './run';

/**
 * patched() id. Histories recorded before it replay on the old path: points labelled and ordered
 * by the primary's clock, no clock-skew alert.
 */
const PATCH_POINT_ORDER = 'point-order';

export interface PointClock {
  instant: string;
  sourceInstant?: string;
  protection?: string;
}

/** The clock fields of the point `frozen` becomes; `beforeMs`: workflow time before the freeze. */
export function pointClock(run: ProtectRun, frozen: FrozenPoint, beforeMs: number): PointClock {
  if (!patched(PATCH_POINT_ORDER)) return { instant: frozen.instant };
  const { s } = run;
  s.protection ??= new Date(beforeMs).toISOString();
  const afterMs = Date.now();
  const { instant, skewMs } = placeInstant(frozen.instant, beforeMs, afterMs);
  if (Math.abs(skewMs) > CLOCK_SKEW_ALERT_MS) {
    const off = `${Math.round(Math.abs(skewMs) / 1000)} s ${skewMs > 0 ? 'ahead' : 'behind'}`;
    const temporal = `${new Date(beforeMs).toISOString()}–${new Date(afterMs).toISOString()}`;
    raise(
      run,
      'clock-skew',
      'warning',
      `the primary host's clock (${run.machine.name}'s process server) read ${frozen.instant} at the ` +
        `freeze while Temporal's clock read ${temporal}: at least ${off}; points are labelled with ` +
        "Temporal's time and ordered by cycle meanwhile. Fix: synchronise the primary host's clock " +
        '(NTP: chrony or systemd-timesyncd, `timedatectl set-ntp true`)',
    );
  } else clear(run, 'clock-skew');
  return { instant, sourceInstant: frozen.instant, protection: s.protection };
}
