// What the libvirt recovery target does on the recovery host through virsh: define and start a
// recovered domain, make a drill's isolated network, ask the guest agent whether the guest is up,
// and remove exactly the domains and networks one recovery made (found by OSR's metadata tag).
import fs from 'node:fs';
import { nameAndTag, sameTag, type OsrTag } from './recovered-domain';
import { virsh, virshWithXml, VirshError } from './virsh';

/** A domain or network of that name exists and is not this recovery's: never replaced. */
export class NotOursError extends Error {
  override readonly name = 'NotOursError';
}

const lines = (out: string) =>
  out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

/** The tag of a domain (or network) of that name, `null` when there is none of that name. */
async function existing(uri: string, kind: 'domain' | 'network', name: string) {
  try {
    const xml = await virsh(uri, [kind === 'domain' ? 'dumpxml' : 'net-dumpxml', '--inactive', '--', name]);
    return nameAndTag(xml, kind).tag;
  } catch (err) {
    if (err instanceof VirshError && /not found|no (domain|network)|failed to get/i.test(err.detail))
      return null;
    throw err;
  }
}

function refuseForeign(kind: string, name: string, uri: string, tag: OsrTag | undefined, want: OsrTag) {
  if (!sameTag(tag, want))
    throw new NotOursError(
      `libvirt at ${uri} already has a ${kind} named ${name} that this ${want.kind} (job ${want.job}) did not make: OSR never replaces it; rename or remove it (\`virsh -c ${uri} ${kind === 'network' ? 'net-undefine' : 'undefine'} ${name}\`) and retry`,
    );
}

/** Defines the domain unless this recovery already did (a retried step), then starts it if it is not running. */
export async function defineAndStart(uri: string, name: string, xml: string, tag: OsrTag): Promise<void> {
  const found = await existing(uri, 'domain', name);
  if (found === null) await virshWithXml(uri, ['define', '@dom'], { dom: xml });
  else refuseForeign('domain', name, uri, found, tag);
  const state = (await virsh(uri, ['domstate', '--', name])).trim();
  if (state !== 'running') await virsh(uri, ['start', '--', name]);
}

/** Makes (or finds, made by this drill) an isolated network and starts it. */
export async function ensureNetwork(uri: string, name: string, xml: string, tag: OsrTag): Promise<void> {
  const found = await existing(uri, 'network', name);
  if (found === null) await virshWithXml(uri, ['net-define', '@net'], { net: xml });
  else refuseForeign('network', name, uri, found, tag);
  const info = await virsh(uri, ['net-info', '--', name]);
  if (!/^Active:\s+yes/m.test(info)) await virsh(uri, ['net-start', '--', name]);
}

/** Removes every domain, then every network, tagged with exactly this recovery; returns what went. */
export async function removeTagged(uri: string, tag: OsrTag): Promise<string[]> {
  const removed: string[] = [];
  for (const name of lines(await virsh(uri, ['list', '--all', '--name']))) {
    if (!sameTag((await existing(uri, 'domain', name)) ?? undefined, tag)) continue;
    await virsh(uri, ['destroy', '--', name]).catch(() => undefined); // not running: nothing to stop
    await virsh(uri, ['undefine', '--checkpoints-metadata', '--snapshots-metadata', '--', name]);
    removed.push(`domain ${name}`);
  }
  for (const name of lines(await virsh(uri, ['net-list', '--all', '--name']))) {
    if (!sameTag((await existing(uri, 'network', name)) ?? undefined, tag)) continue;
    await virsh(uri, ['net-destroy', '--', name]).catch(() => undefined);
    await virsh(uri, ['net-undefine', '--', name]);
    removed.push(`network ${name}`);
  }
  return removed;
}

/** Powers off (keeps defined) every domain tagged with exactly this recovery; returns their names. */
export async function stopTagged(uri: string, tag: OsrTag): Promise<string[]> {
  const stopped: string[] = [];
  for (const name of lines(await virsh(uri, ['list', '--name']))) {
    if (!sameTag((await existing(uri, 'domain', name)) ?? undefined, tag)) continue;
    await virsh(uri, ['destroy', '--', name]);
    stopped.push(name);
  }
  return stopped;
}

/** Whether the guest agent answers `guest-ping` (a real reply: `{"return":{}}`), with why not. */
export async function guestAgentAnswers(
  uri: string,
  domain: string,
): Promise<{ ok: boolean; detail: string }> {
  try {
    const out = await virsh(
      uri,
      ['qemu-agent-command', '--timeout', '5', '--', domain, '{"execute":"guest-ping"}'],
      {
        timeoutMs: 15_000,
      },
    );
    const reply = JSON.parse(out) as { return?: unknown };
    return reply.return !== undefined
      ? { ok: true, detail: `guest-ping answered ${out.trim()}` }
      : { ok: false, detail: `guest-ping answered ${out.trim()}` };
  } catch (err) {
    return { ok: false, detail: (err as Error).message };
  }
}

/**
 * A session libvirtd (qemu+unix:///session?socket=…) runs QEMU as the daemon's own user, and only
 * a system libvirtd relabels images itself: when this process (root) made the images for another
 * user's session daemon, they are handed to the owner of that daemon's socket.
 */
export function handToSessionDaemon(uri: string, paths: string[]): void {
  const socket = /^qemu(\+unix)?:\/\/\/session\?(?:.*&)?socket=([^&]+)/.exec(uri)?.[2];
  if (!socket || process.getuid?.() !== 0) return;
  const { uid, gid } = fs.statSync(decodeURIComponent(socket));
  if (uid === 0) return;
  for (const p of paths) fs.chownSync(p, uid, gid);
}
