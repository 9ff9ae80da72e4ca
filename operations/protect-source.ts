// What `osr protect` protects: a QEMU process by its monitor (on this site, or on an added host),
// a domain of an added libvirt host, or a machine with an enrolled Mobility agent, and the
// machine's site, host and source record for it; a libvirt domain's own definition, kept in the
// vault for the libvirt recovery target.
import type { ProtectedMachine, QuiesceHooks } from '../shared/replication-types';
import { keptDomainDoc, type KeptDomain } from '../shared/libvirt-target';
import { OperationError, type ControlContext } from './context';
import { getHost } from './hosts';
import { getAgent } from './agents';

/** A QEMU process by its monitor, or a domain of an added libvirt host. */
export type ProtectSource =
  | {
      qmpSocket: string;
      nbdSocket?: string;
      /** An added host (`osr host add`): the machine's work goes to that host's process servers. */
      host?: string;
    }
  | { host: string; domain: string }
  /** An enrolled Mobility agent (`osr agent list`). */
  | { agentId: string };

/** The machine's source and site: a QEMU monitor of this site, or a domain of an added libvirt host. */
export async function sourceOf(
  ctx: ControlContext,
  options: ProtectSource & { disks?: string[]; quiesce?: QuiesceHooks },
): Promise<{ site: string; host?: string; source: ProtectedMachine['source'] }> {
  if ('agentId' in options) {
    if (options.quiesce?.guestAgentSocket)
      throw new OperationError(
        '--guest-agent is a QEMU guest-agent socket on the VM host, which an agent machine has none of: drop it; the Mobility agent quiesces the machine itself (fsfreeze, /etc/osr-agent/freeze.d, --pre/--post run on the machine)',
        'invalid',
      );
    // Refused with the fix when the id is malformed or unknown (bad input to protect); nothing is
    // recorded before.
    const agent = await getAgent(ctx, options.agentId).catch((err: unknown) => {
      throw err instanceof OperationError && err.code === 'not-found'
        ? new OperationError(`${err.message}; --agent takes an id \`osr agent list\` shows`, 'invalid')
        : err;
    });
    const writable = agent.facts.disks.filter((d) => !d.readOnly);
    const names = writable.map((d) => d.name);
    const missing = (options.disks ?? []).filter((d) => !names.includes(d));
    if (missing.length)
      throw new OperationError(
        `agent ${agent.id} (${agent.facts.hostname}) has no writable disk ${missing.join(', ')}; it has ${names.join(', ') || 'none'}: fix --disks`,
        'invalid',
      );
    // What the agent saw at its last connection; the agent checks again when tracking starts.
    const busy = writable.filter((d) => d.inUse && (!options.disks || options.disks.includes(d.name)));
    if (busy.length)
      throw new OperationError(
        `${busy.map((d) => `disk ${d.name} of ${agent.facts.hostname} is ${d.inUse}`).join('; ')}: the agent cannot slip tracking under a disk in use. Protect disks that are not in use (--disks ${names.filter((n) => !busy.some((b) => b.name === n)).join(',') || '<disk>'}), or stop using it (umount) first; the machine then uses it as /dev/mapper/osr-<disk>`,
        'invalid',
      );
    return { site: ctx.config.site, source: { type: 'agent', agentId: agent.id, disks: options.disks } };
  }
  if (!('domain' in options)) {
    if (options.host !== undefined) await getHost(ctx, options.host);
    return {
      site: ctx.config.site,
      host: options.host,
      source: {
        type: 'qemu',
        qmpSocket: options.qmpSocket,
        nbdSocket: options.nbdSocket,
        disks: options.disks,
      },
    };
  }
  const host = await getHost(ctx, options.host);
  if (host.kind !== 'libvirt')
    throw new OperationError(
      `host ${host.name} is a ${host.kind} host, not libvirt: --domain takes a domain of a host added with \`osr host add <name> --libvirt <uri>\``,
      'invalid',
    );
  if (!options.domain.trim())
    throw new OperationError('--domain needs the libvirt domain name (`virsh list --all`)', 'invalid');
  return {
    site: host.site,
    // Its work goes to the host's process servers: the libvirt host is where the exports are.
    host: host.name,
    source: { type: 'libvirt', host: host.name, uri: host.uri, domain: options.domain, disks: options.disks },
  };
}

export function sourceSummary(source: ProtectedMachine['source']): string {
  if (source.type === 'agent') return `agent ${source.agentId}`;
  return source.type === 'libvirt'
    ? `libvirt domain ${source.domain} on host ${source.host}`
    : `QMP ${source.qmpSocket}`;
}

/**
 * Keeps a libvirt machine's own domain definition next to its record, so a recovery site that
 * lost the primary can still define it (the libvirt recovery target starts from it).
 */
export async function keepDomain(
  ctx: ControlContext,
  machine: string,
  source: Extract<ProtectedMachine['source'], { type: 'libvirt' }>,
  xml: string,
): Promise<void> {
  const kept: KeptDomain = {
    machine,
    host: source.host,
    uri: source.uri,
    domain: source.domain,
    xml,
    keptAt: new Date().toISOString(),
  };
  await ctx.vault.write(keptDomainDoc(machine), kept, '*');
}
