// The Azure readiness check through a machine's QEMU guest agent: the guest runs READINESS_SCRIPT
// with guest-exec (qemu-ga allows it unless its configuration blocks guest-exec) and the rules in
// azure-readiness-rules.ts judge the output. Never throws: what cannot be checked says why.
import { setTimeout as sleep } from 'node:timers/promises';
import type { AzureReadiness } from '../../shared/azure-readiness';
import { READINESS_SCRIPT, readinessOf } from './azure-readiness-rules';
import { GuestAgentClient } from './guest-agent-client';

interface ExecStatus {
  exited: boolean;
  exitcode?: number;
  'out-data'?: string;
  'err-data'?: string;
}

/** Inside the probe's 20 s (workflows/check-source.ts), with the QMP probe beside it. */
const DEFAULT_TIMEOUT_MS = 10_000;

export const NO_GUEST_AGENT =
  'no guest agent: protect with --guest-agent <socket> (the host side of the VM’s org.qemu.guest_agent.0 channel) to have the guest checked';

export async function checkAzureReadiness(
  guestAgentSocket: string | undefined,
  options: { timeoutMs?: number } = {},
): Promise<AzureReadiness> {
  const checkedAt = new Date().toISOString();
  if (!guestAgentSocket) return { checked: false, checkedAt, reason: NO_GUEST_AGENT };
  const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  let agent: GuestAgentClient | undefined;
  try {
    agent = await GuestAgentClient.connect(guestAgentSocket, 5000);
    const { pid } = await agent.execute<{ pid: number }>('guest-exec', {
      path: '/bin/sh',
      arg: ['-c', READINESS_SCRIPT],
      'capture-output': true,
    });
    for (;;) {
      const status = await agent.execute<ExecStatus>('guest-exec-status', { pid });
      if (status.exited) {
        const out = Buffer.from(status['out-data'] ?? '', 'base64').toString('utf8');
        return readinessOf(out, checkedAt);
      }
      if (Date.now() > deadline)
        return {
          checked: false,
          checkedAt,
          reason: `the guest's check did not finish within ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`,
        };
      await sleep(200); // polling the agent: guest-exec has no completion event
    }
  } catch (err) {
    return {
      checked: false,
      checkedAt,
      reason: `the guest agent could not run the check: ${(err as Error).message}`,
    };
  } finally {
    agent?.close();
  }
}
