// Is a QEMU process a VM, and is it running? qemu-storage-daemon has no run state (its writers
// are outside QEMU); a qemu-system VM answers query-status.
import { QmpClient, QmpError } from './qmp-client';

export type RunState = 'running' | 'paused' | 'not-a-vm';

export async function withQmp<T>(qmpSocket: string, fn: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect(qmpSocket, { greetingTimeoutMs: 10_000 });
  try {
    return await fn(qmp);
  } finally {
    await qmp.close();
  }
}

export async function runState(qmp: QmpClient): Promise<RunState> {
  try {
    const status = await qmp.execute<{ running: boolean }>('query-status');
    return status.running ? 'running' : 'paused';
  } catch (err) {
    if (err instanceof QmpError && err.errorClass === 'CommandNotFound') return 'not-a-vm';
    throw err;
  }
}

/** Pauses a running VM (QMP `stop`: QEMU drains in-flight I/O) in one connection; returns its state before. */
export function pauseIfRunning(qmpSocket: string): Promise<RunState> {
  return withQmp(qmpSocket, async (qmp) => {
    const state = await runState(qmp);
    if (state === 'running') await qmp.execute('stop');
    return state;
  });
}

/** Resumes a paused VM (QMP `cont`) in one connection; returns its state before. */
export function resumeIfPaused(qmpSocket: string): Promise<RunState> {
  return withQmp(qmpSocket, async (qmp) => {
    const state = await runState(qmp);
    if (state === 'paused') await qmp.execute('cont');
    return state;
  });
}
