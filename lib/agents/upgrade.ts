// The process server's side of an agent upgrade (agent/upgrade.ts), on the agent's own connection:
// stage the bundle in chunks, have the agent verify it (SHA-256 of the bytes against the digest
// the control plane expects, then the version of the unpacked files), switch, and wait for the
// agent to come back: with the new version (upgraded) or the old one (its watchdog rolled back).
import { UPGRADE_CHUNK_BYTES, type VerifyResult } from '../../agent/protocol';
import type { PackedBundle } from '../../agent/bundle';
import { agentChannel, AgentGoneError, type AgentChannel } from './channel';

export type UpgradeStep = 'staging' | 'verifying' | 'restarting' | 'waiting';

/** The agent refused the bundle or could not take it: nothing was replaced. */
export class UpgradeRefusedError extends Error {
  override readonly name = 'UpgradeRefusedError';
}

export async function stageAndVerify(
  channel: AgentChannel,
  bundle: PackedBundle,
  expectedSha256: string,
  onStep: (step: UpgradeStep, detail?: string) => void,
): Promise<VerifyResult> {
  try {
    for (let offset = 0; offset < bundle.bytes.length || offset === 0; offset += UPGRADE_CHUNK_BYTES) {
      onStep('staging', `${offset} of ${bundle.bytes.length} bytes`);
      const data = bundle.bytes.subarray(offset, offset + UPGRADE_CHUNK_BYTES).toString('base64');
      await channel.request({ op: 'stage', offset, data }, 60_000);
    }
    onStep('verifying');
    return (await channel.request(
      { op: 'verify', sha256: expectedSha256, size: bundle.bytes.length },
      60_000,
    )) as VerifyResult;
  } catch (err) {
    if (err instanceof AgentGoneError) throw err;
    throw new UpgradeRefusedError(`agent ${channel.agentId} refused the upgrade: ${(err as Error).message}`);
  }
}

export interface UpgradeOutcome {
  outcome: 'upgraded' | 'rolled-back';
  version: string;
}

/**
 * Switches a verified agent to its new version and waits until it is back on this process server
 * (a new connection): upgraded when it says the new version, rolled back when the old one.
 */
export async function switchAndWait(
  channel: AgentChannel,
  verified: VerifyResult,
  timeoutSeconds: number,
  onStep: (step: UpgradeStep, detail?: string) => void,
): Promise<UpgradeOutcome> {
  onStep('restarting', `${verified.from} → ${verified.to}`);
  await channel.request({ op: 'switch', timeoutSeconds }, 60_000);
  // The watchdog rolls back at the deadline; the old agent's service restarts it within seconds.
  const giveUp = Date.now() + (timeoutSeconds + 90) * 1000;
  onStep('waiting', `for ${verified.to} to connect (rolled back after ${timeoutSeconds} s)`);
  for (;;) {
    const now = agentChannel(channel.agentId);
    if (now && now !== channel) {
      const version = now.facts.agentVersion;
      if (version === verified.to) return { outcome: 'upgraded', version };
      if (version === verified.from) return { outcome: 'rolled-back', version };
    }
    if (Date.now() > giveUp)
      throw new AgentGoneError(
        `agent ${channel.agentId} has not come back to this process server within ${timeoutSeconds + 90} s of its restart into ${verified.to}: see /var/log/osr-agent.log and /opt/osr-agent/upgrade.json on the machine`,
      );
    await new Promise((r) => setTimeout(r, 1000));
  }
}
