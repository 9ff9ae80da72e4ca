// The steps recorder of jobs (drills, failovers, failback, reenable): each step's state, times and
// detail (or error), as the status query shows them.
import type { RecoveryStep } from '../../shared/contracts/recovery-job';
import { messageOf } from './failures';

/** Runs one step of a job, recording its state, times and detail (or error) in `steps`. */
export async function runStep<T>(
  steps: RecoveryStep[],
  name: string,
  run: () => Promise<T>,
  detail?: (result: T) => string | undefined,
  onStart?: () => void,
): Promise<T> {
  const now = () => new Date(Date.now()).toISOString();
  const entry: RecoveryStep = { name, state: 'running', startedAt: now() };
  steps.push(entry);
  onStart?.();
  try {
    const result = await run();
    entry.state = 'done';
    entry.detail = detail?.(result);
    return result;
  } catch (err) {
    entry.state = 'failed';
    entry.detail = messageOf(err);
    throw err;
  } finally {
    entry.endedAt = now();
  }
}
