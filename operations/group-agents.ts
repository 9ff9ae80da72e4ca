// A group cut holds every member's writes, and an agent member does that with the `hold` request.
// An agent of another build than this release's may predate it and answer "unknown request", which
// would fail every cut: such members are refused at create with the upgrade that fixes it. Agent
// versions are a build hash (agent/bundle.ts), not ordered, so "not this release's" is the test.
import type { ProtectedMachine } from '../shared/replication-types';
import { getAgent } from './agents';
import { OperationError, type ControlContext } from './context';

/** Refuses (exit 2 / HTTP 400) when an agent member runs another build than the shipped one. */
export async function checkAgentMembersCanHold(
  ctx: ControlContext,
  members: Array<Pick<ProtectedMachine, 'name' | 'source'>>,
): Promise<void> {
  const behind: string[] = [];
  const ids: string[] = [];
  for (const m of members) {
    if (m.source.type !== 'agent') continue;
    const agent = await getAgent(ctx, m.source.agentId);
    if (!agent.outdated) continue;
    behind.push(`${m.name}'s agent ${agent.id} runs ${agent.version}, not ${agent.shippedVersion}`);
    ids.push(agent.id);
  }
  if (behind.length)
    throw new OperationError(
      `${behind.join('; ')}: an agent older than this release may not know the group's write hold. Upgrade it first: ${ids.map((id) => `\`osr agent upgrade ${id}\``).join(', ')} (or --all), then create the group`,
      'invalid',
    );
}
