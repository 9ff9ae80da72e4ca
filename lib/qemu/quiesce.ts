// Quiescing the application around an app-consistent point: through the QEMU guest agent when
// the machine has one (guest-fsfreeze-freeze/thaw), otherwise through configured pre/post
// commands. Whatever happens, what was frozen is thawed again. A failure to quiesce is a
// QuiesceError (the caller cuts a crash-consistent point instead); a failed thaw is not.
import type { QuiesceHooks } from '../../shared/replication-types';
import { runHook } from '../process/hook';
import { QuiesceError } from '../sources/source-connector';
import { GuestAgentClient } from './guest-agent-client';

const quiesceFailed = (message: string): QuiesceError => new QuiesceError(message);

export async function quiesceAround<T>(
  hooks: QuiesceHooks | undefined,
  machine: string,
  freeze: () => Promise<T>,
): Promise<T> {
  const timeout = (hooks?.timeoutSeconds ?? 60) * 1000;
  if (hooks?.guestAgentSocket) return withGuestAgent(hooks.guestAgentSocket, timeout, machine, freeze);
  if (!hooks?.pre && !hooks?.post) return freeze();
  const env = { ...process.env, OSR_MACHINE: machine, OSR_POINT_KIND: 'app' };
  try {
    if (hooks.pre) {
      await runHook(hooks.pre, env, timeout, `pre-quiesce command of ${machine}`).catch((err: Error) => {
        throw quiesceFailed(err.message);
      });
    }
    return await freeze();
  } finally {
    // Thaw even when the quiesce or the freeze failed: a half-quiesced application must not stay so.
    if (hooks.post) await runHook(hooks.post, env, timeout, `post-quiesce (thaw) command of ${machine}`);
  }
}

async function withGuestAgent<T>(
  socket: string,
  timeout: number,
  machine: string,
  freeze: () => Promise<T>,
): Promise<T> {
  let agent: GuestAgentClient | undefined;
  try {
    agent = await GuestAgentClient.connect(socket, timeout);
    await agent.freeze();
  } catch (err) {
    if (agent) await agent.thaw().catch(() => undefined);
    agent?.close();
    throw quiesceFailed(
      `guest agent of ${machine} could not freeze its filesystems: ${(err as Error).message}`,
    );
  }
  try {
    return await freeze();
  } finally {
    try {
      await agent.thaw().catch(() => (agent as GuestAgentClient).thaw());
    } finally {
      agent.close();
    }
  }
}
