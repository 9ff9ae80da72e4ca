// Quiescing the application around an app-consistent point: through the QEMU guest agent when
// the machine has one (guest-fsfreeze-freeze/thaw), otherwise through configured pre/post
// commands. Whatever happens, what was frozen is thawed again. A failure to quiesce is a
// QuiesceError (the caller cuts a crash-consistent point instead); a failed thaw is not.
// A guest-agent freeze is marked until thawed (lib/sources/freeze-marker.ts): the connector's
// next call thaws a guest an interrupted point left frozen (thawLeftFrozen).
import type { QuiesceHooks } from '../../shared/replication-types';
import { runHook } from '../process/hook';
import { withMarkedFreeze, thawIfMarked } from '../sources/freeze-marker';
import { QuiesceError } from '../sources/source-connector';
import { GuestAgentClient } from './guest-agent-client';

const quiesceFailed = (message: string): QuiesceError => new QuiesceError(message);

export async function quiesceAround<T>(
  hooks: QuiesceHooks | undefined,
  machine: string,
  freeze: () => Promise<T>,
  frozenMarker?: string,
): Promise<T> {
  const timeout = (hooks?.timeoutSeconds ?? 60) * 1000;
  if (hooks?.guestAgentSocket)
    return withGuestAgent(hooks.guestAgentSocket, timeout, machine, freeze, frozenMarker);
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
  frozenMarker: string | undefined,
): Promise<T> {
  const cannotFreeze = (err: unknown) =>
    quiesceFailed(`guest agent of ${machine} could not freeze its filesystems: ${(err as Error).message}`);
  const agent = await GuestAgentClient.connect(socket, timeout).catch((err: unknown) => {
    throw cannotFreeze(err);
  });
  try {
    return await withMarkedFreeze(
      frozenMarker,
      {
        freeze: () =>
          agent.freeze().then(
            () => undefined,
            (err: unknown) => Promise.reject(cannotFreeze(err)),
          ),
        // Once more on failure: a thaw is harmless on a thawed guest, and a frozen one must not stay so.
        thaw: () =>
          agent
            .thaw()
            .catch(() => agent.thaw())
            .then(() => undefined),
        thawFailed: (err) => err,
      },
      freeze,
    );
  } finally {
    agent.close();
  }
}

/** Thaws a guest an interrupted freeze of OSR's may have left frozen; a no-op when none did. */
export function thawLeftFrozen(socket: string, machine: string, frozenMarker: string): Promise<void> {
  return thawIfMarked(frozenMarker, {
    thaw: async () => {
      const agent = await GuestAgentClient.connect(socket);
      try {
        await agent.thaw();
      } finally {
        agent.close();
      }
    },
    thawFailed: (err) =>
      new Error(
        `the filesystems of ${machine} may still be frozen by an interrupted app-consistent point, and thawing them failed (${err.message}); OSR tries again at its next call, or thaw them in the guest now: \`fsfreeze -u <mountpoint>\``,
      ),
  });
}
