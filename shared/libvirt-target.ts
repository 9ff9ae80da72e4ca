// The libvirt recovery target's types that cross the workflow/activity boundary and live in the
// vault: the protected domain's own definition kept at protect, the per-machine settings, and what
// a drill or failover made on the recovery host. Pure: no I/O, safe to import from workflow code.
import { vaultSegment } from './names';

/** A libvirt machine's domain definition as its host kept it at protect (vault: libvirt-domains/<machine>.json). */
export interface KeptDomain {
  machine: string;
  /** The protected domain's host, URI and name. */
  host: string;
  uri: string;
  domain: string;
  /** `virsh dumpxml --inactive`: the definition libvirt keeps, not the live one. */
  xml: string;
  keptAt: string;
}

/** What a guest's serial console shows once it is up, unless the settings say otherwise. */
export const DEFAULT_CONSOLE_PATTERN = 'login:';

export const keptDomainDoc = (machine: string) =>
  `libvirt-domains/${vaultSegment('machine name', machine)}.json`;

/** Where a machine is recovered as a libvirt domain (`osr failover configure --target libvirt`). */
export interface LibvirtTargetSettings {
  /** A libvirt host added with `osr host add <name> --libvirt <uri>`, local to the cloud applier. */
  recoveryHost: string;
  /** An existing libvirt network drills use instead of the isolated one OSR makes for each drill. */
  drillNetwork?: string;
  /** A NIC on a primary-site network (or bridge) named as a key goes on the value's libvirt network. */
  networks?: Record<string, string>;
  /**
   * A guest without an agent is up when its serial console shows a line matching this regular
   * expression (default `login:`, a getty's prompt): kernel messages alone do not count.
   */
  consolePattern?: string;
  /** How long the boot probe waits for the guest (default 300 s). */
  bootTimeoutSeconds?: number;
  /** The host's URI, resolved by the control plane when a recovery starts (never stored). */
  uri?: string;
}

/** The recovered domain's name: readable, one per recovery (a drill's and a failover's differ). */
export function recoveredDomainName(machine: string, kind: 'drill' | 'failover', job: string): string {
  return `${machine}-${kind}-${job}`;
}

/** What one recovery made on the recovery host (found again by the OSR metadata tag). */
export interface LibvirtResources {
  host: string;
  uri: string;
  domain: string;
  /** Set once the domain is defined. */
  uuid?: string;
  /** The isolated network made for a drill (absent: none made). */
  drillNetwork?: string;
  /** Devices of the protected domain left out (cdroms, disks not recovered). */
  dropped?: string[];
  /** How the boot probe hears the guest: its guest agent, else its serial console. */
  hears?: 'guest-agent' | 'serial-console' | 'nothing';
  /** What the boot probe saw. */
  probe?: { ok: boolean; how: 'guest-agent' | 'serial-console'; detail: string; seconds: number };
}
