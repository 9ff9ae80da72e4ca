// App-consistent points of a libvirt domain: the guest's filesystems frozen through libvirt's own
// guest-agent channel (`domfsfreeze`, `domfsthaw`; libvirtd is the agent's only client) around
// the point's freeze. A guest left frozen blocks every write of its applications, so a freeze is
// marked in the connector's work folder before it is asked for and unmarked only once thawed:
// when the process server dies (or libvirt fails the thaw) in between, the next call of the
// connector for that domain thaws it first.
import fs from 'node:fs';
import { QuiesceError } from '../sources/source-connector';
import { virsh } from './virsh';

/** Runs `fn` with the guest's filesystems frozen; throws QuiesceError, having run nothing, when they cannot be. */
export async function withGuestFrozen<T>(
  uri: string,
  domain: string,
  marker: string,
  fn: () => Promise<T>,
): Promise<T> {
  fs.writeFileSync(marker, new Date().toISOString());
  try {
    await virsh(uri, ['domfsfreeze', '--', domain]);
  } catch (err) {
    // Nothing was frozen (no agent, or it refused); a thaw is harmless should a freeze that
    // timed out have gone through after all.
    await virsh(uri, ['domfsthaw', '--', domain]).catch(() => undefined);
    fs.rmSync(marker, { force: true });
    throw new QuiesceError(
      `the guest agent of ${domain} could not freeze its filesystems (${(err as Error).message}); install and start qemu-guest-agent in the guest, with an org.qemu.guest_agent.0 channel in the domain`,
    );
  }
  try {
    return await fn();
  } finally {
    await thawLeftFrozen(uri, domain, marker);
  }
}

/** Thaws a guest that an earlier freeze of OSR's may have left frozen; no-op when none did. */
export async function thawLeftFrozen(uri: string, domain: string, marker: string): Promise<void> {
  if (!fs.existsSync(marker)) return;
  try {
    await virsh(uri, ['domfsthaw', '--', domain]);
  } catch (err) {
    throw new Error(
      `the filesystems of libvirt domain ${domain} may still be frozen by an interrupted app-consistent point, and thawing them failed (${(err as Error).message}); OSR tries again at its next call, or thaw them now: \`virsh -c ${uri} domfsthaw ${domain}\``,
    );
  }
  fs.rmSync(marker, { force: true });
}
