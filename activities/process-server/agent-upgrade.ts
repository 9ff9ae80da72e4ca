// `osr agent upgrade` on the process server holding the agent's connection: this server's copy of
// the agent bundle goes over that connection (lib/agents/upgrade.ts). The agent checks it against
// the digest the control plane expects, so a copy that differs here is refused there.
import { ApplicationFailure } from '@temporalio/common';
import type { VerifyResult } from '../../agent/protocol';
import { packBundle } from '../../agent/bundle';
import { agentBundleDir } from '../../lib/agents/bundle-source';
import { agentChannel, type AgentChannel } from '../../lib/agents/channel';
import { stageAndVerify, switchAndWait, UpgradeRefusedError } from '../../lib/agents/upgrade';
import type { Logger } from '../../lib/config/logger';
import { FAILURE } from '../../shared/failures';
import { withHeartbeat } from '../common/with-heartbeat';

function channelOf(agentId: string): AgentChannel {
  const channel = agentChannel(agentId);
  if (!channel)
    throw ApplicationFailure.create({
      type: FAILURE.AgentUpgradeRefused,
      nonRetryable: true,
      message: `agent ${agentId} is not connected to this process server any more: nothing was replaced; see \`osr agent show ${agentId}\` and upgrade again once it is connected`,
    });
  return channel;
}

const refused = (err: unknown): unknown =>
  err instanceof UpgradeRefusedError
    ? ApplicationFailure.create({
        type: FAILURE.AgentUpgradeRefused,
        nonRetryable: true,
        message: err.message,
      })
    : err;

export function createAgentUpgradeActivities(deps: { bundleDir?: string; log: Logger }) {
  return {
    stageAgentUpgrade: (input: { agentId: string; sha256: string }): Promise<VerifyResult> =>
      withHeartbeat(async () => {
        const bundle = packBundle(agentBundleDir(deps.bundleDir));
        const step = (s: string, detail?: string) =>
          deps.log.info({ agentId: input.agentId, detail }, `agent upgrade: ${s}`);
        return stageAndVerify(channelOf(input.agentId), bundle, input.sha256, step).catch((err) => {
          throw refused(err);
        });
      }),

    switchAgentUpgrade: (input: { agentId: string; verified: VerifyResult; timeoutSeconds: number }) =>
      withHeartbeat(() =>
        switchAndWait(channelOf(input.agentId), input.verified, input.timeoutSeconds, (s, detail) =>
          deps.log.info({ agentId: input.agentId, detail }, `agent upgrade: ${s}`),
        ),
      ),
  };
}
