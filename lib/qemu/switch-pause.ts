// A VM with several disks is paused (QMP `stop`) for the moment its devices move onto, or back
// off, the fleecing filters, so that all its disks switch at one instant as the guest sees it.
// A process server that dies inside that moment would leave the machine paused: its business
// stops. So the pause is marked in a file of the connector's work folder before `stop`, and
// unmarked after `cont`; the connector's next session resumes a VM the mark says OSR paused.
import fs from 'node:fs';
import path from 'node:path';
import type { QmpClient } from './qmp-client';
import { runState } from './run-state';

/** Runs `fn` with the VM paused, marked in the file `marker` meanwhile. */
export async function withMarkedPause(
  qmp: QmpClient,
  marker: string,
  fn: () => Promise<void>,
): Promise<void> {
  fs.mkdirSync(path.dirname(marker), { recursive: true });
  fs.writeFileSync(marker, new Date().toISOString());
  await qmp.execute('stop');
  try {
    await fn();
  } finally {
    await qmp.execute('cont');
    fs.rmSync(marker, { force: true });
  }
}

/**
 * Resumes a VM an interrupted switch left paused; a no-op without the mark, so a VM its operator
 * paused stays paused. Returns whether it resumed one.
 */
export async function resumeIfLeftPaused(qmp: QmpClient, marker: string): Promise<boolean> {
  if (!fs.existsSync(marker)) return false;
  const paused = (await runState(qmp)) === 'paused';
  if (paused) await qmp.execute('cont');
  fs.rmSync(marker, { force: true });
  return paused;
}
