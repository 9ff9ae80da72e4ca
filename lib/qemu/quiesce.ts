// Quiescing the application around an app-consistent point: through the QEMU guest agent when
// the machine has one (guest-fsfreeze-freeze/thaw), otherwise through configured pre/post
// commands. Whatever happens, what was frozen is thawed again. A failure to quiesce is a
// QuiesceError (the caller cuts a crash-consistent point instead); a failed thaw is not.
// A guest left frozen blocks every write of its applications, so a guest-agent freeze is marked
// in a file (`frozenMarker`) before it is asked for and unmarked only once thawed: when the
// process server dies in between, the connector's next call thaws it first (thawLeftFrozen).
import fs from 'node:fs';
import path from 'node:path';
import type { QuiesceHooks } from '../../shared/replication-types';
import { runHook } from '../process/hook';
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
  let agent: GuestAgentClient | undefined;
  try {
    agent = await GuestAgentClient.connect(socket, timeout);
    if (frozenMarker) {
      fs.mkdirSync(path.dirname(frozenMarker), { recursive: true });
      fs.writeFileSync(frozenMarker, new Date().toISOString());
    }
    await agent.freeze();
  } catch (err) {
    if (agent) await agent.thaw().catch(() => undefined);
    agent?.close();
    if (frozenMarker) fs.rmSync(frozenMarker, { force: true });
    throw quiesceFailed(
      `guest agent of ${machine} could not freeze its filesystems: ${(err as Error).message}`,
    );
  }
  try {
    return await freeze();
  } finally {
    try {
      await agent.thaw().catch(() => (agent as GuestAgentClient).thaw());
      if (frozenMarker) fs.rmSync(frozenMarker, { force: true });
    } finally {
      agent.close();
    }
  }
}

/** Thaws a guest an interrupted freeze of OSR's may have left frozen; a no-op when none did. */
export async function thawLeftFrozen(socket: string, machine: string, frozenMarker: string): Promise<void> {
  if (!fs.existsSync(frozenMarker)) return;
  let agent: GuestAgentClient | undefined;
  try {
    agent = await GuestAgentClient.connect(socket);
    await agent.thaw();
  } catch (err) {
    throw new Error(
      `the filesystems of ${machine} may still be frozen by an interrupted app-consistent point, and thawing them failed (${(err as Error).message}); OSR tries again at its next call, or thaw them in the guest now: \`fsfreeze -u <mountpoint>\``,
    );
  } finally {
    agent?.close();
  }
  fs.rmSync(frozenMarker, { force: true });
}
