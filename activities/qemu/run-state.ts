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
