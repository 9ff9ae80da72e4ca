// Before `osr protect` records anything: is the --qmp path a QMP monitor? Checked here, on the
// process server of the machine's site, because only the machine's host can see its socket; the
// control plane (CLI, `osr serve`) may run anywhere.
import fs from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import { QmpClient } from '../../lib/qemu/qmp-client';
import { FAILURE } from '../../shared/failures';

export interface ProbeSourceInput {
  qmpSocket: string;
}

export interface ProbeSourceResult {
  /** false: the monitor accepted but stayed silent (another client holds it; the process server will wait its turn). */
  greeted: boolean;
}

/**
 * Refuses a --qmp path that is no QMP monitor: missing, a plain file, a dead socket, an NBD
 * socket. A monitor that accepts but stays silent (another client holds it; QEMU serves one at a
 * time) is not refused.
 */
export async function probeSource(input: ProbeSourceInput): Promise<ProbeSourceResult> {
  if (!fs.existsSync(input.qmpSocket))
    throw ApplicationFailure.create({
      message: `no QMP socket at ${input.qmpSocket}: start the VM or qemu-storage-daemon with a QMP monitor (--chardev socket,path=…,server=on,wait=off --monitor chardev=…) and pass its path with --qmp. Nothing was started.`,
      type: FAILURE.SourceRefused,
      nonRetryable: true,
    });
  let qmp: QmpClient | undefined;
  try {
    qmp = await QmpClient.connect(input.qmpSocket, { greetingTimeoutMs: 3000 });
    return { greeted: true };
  } catch (err) {
    const message = (err as Error).message;
    if (/sent no greeting/.test(message)) return { greeted: false };
    throw ApplicationFailure.create({
      message: `${message}. Nothing was started.`,
      type: FAILURE.SourceRefused,
      nonRetryable: true,
    });
  } finally {
    await qmp?.close();
  }
}
