// App-consistent points of a libvirt domain: the guest's filesystems frozen through libvirt's own
// guest-agent channel (`domfsfreeze`, `domfsthaw`; libvirtd is the agent's only client) around
// the point's freeze, marked until thawed (lib/sources/freeze-marker.ts): the next call of the
// connector for that domain thaws a guest an interrupted point left frozen.
import { thawIfMarked, withMarkedFreeze, type GuestFreeze } from '../sources/freeze-marker';
import { QuiesceError } from '../sources/source-connector';
import { virsh } from './virsh';

/** Runs `fn` with the guest's filesystems frozen; throws QuiesceError, having run nothing, when they cannot be. */
export function withGuestFrozen<T>(
  uri: string,
  domain: string,
  marker: string,
  fn: () => Promise<T>,
): Promise<T> {
  return withMarkedFreeze(marker, domainFreeze(uri, domain), fn);
}

/** Thaws a guest that an earlier freeze of OSR's may have left frozen; no-op when none did. */
export function thawLeftFrozen(uri: string, domain: string, marker: string): Promise<void> {
  return thawIfMarked(marker, domainFreeze(uri, domain));
}

function domainFreeze(uri: string, domain: string): GuestFreeze {
  return {
    freeze: async () => {
      try {
        await virsh(uri, ['domfsfreeze', '--', domain]);
      } catch (err) {
        throw new QuiesceError(
          `the guest agent of ${domain} could not freeze its filesystems (${(err as Error).message}); install and start qemu-guest-agent in the guest, with an org.qemu.guest_agent.0 channel in the domain`,
        );
      }
    },
    thaw: async () => void (await virsh(uri, ['domfsthaw', '--', domain])),
    thawFailed: (err) =>
      new Error(
        `the filesystems of libvirt domain ${domain} may still be frozen by an interrupted app-consistent point, and thawing them failed (${err.message}); OSR tries again at its next call, or thaw them now: \`virsh -c ${uri} domfsthaw ${domain}\``,
      ),
  };
}
