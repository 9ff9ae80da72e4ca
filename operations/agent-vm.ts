// VMware VMs protected through the Mobility agent: `osr agent install --vm <host>/<vm>` finds the
// VM through its vCenter host's discovery and pushes the agent to the guest IP vCenter reports
// (VMware Tools), or to --ssh for a NAT'd guest; the enrolled agent keeps the link, and
// `osr discover` shows the VM as protectable through that agent.
import type { DiscoveredMachine } from '../shared/host-types';
import { agentDoc, type AgentRecord, type AgentVmLink } from '../lib/agents/registry';
import { parseSshTarget } from '../lib/ssh/session';
import { OperationError, type ControlContext } from './context';
import { discoverOn, discoveryRefusal } from './discovery';
import { getHost } from './hosts';

/** How many known names a refusal lists. */
const SHOWN = 5;

const some = (names: string[]) =>
  names.length > SHOWN ? `${names.slice(0, SHOWN).join(', ')} … (${names.length} in all)` : names.join(', ');

/** `<host>/<vm>`: the VM name may hold slashes, the host name cannot. */
export function parseVmSpec(spec: string): { host: string; vm: string } {
  const at = spec.indexOf('/');
  if (at <= 0 || at === spec.length - 1)
    throw new OperationError(
      `--vm "${spec}" is not <vcenter-host>/<vm-name> (e.g. vc1/web-01; \`osr discover --host <vcenter-host>\` lists the VMs)`,
      'invalid',
    );
  return { host: spec.slice(0, at), vm: spec.slice(at + 1) };
}

/**
 * Where to push the agent for a discovered VM, and the link the agent keeps; refuses a VM that is
 * unknown, powered off, or has no guest IP when no --ssh is given. Pure: the caller discovers
 * (and has checked a given --ssh).
 */
export function vmInstallTarget(
  host: string,
  machines: DiscoveredMachine[],
  vmName: string,
  ssh?: string,
): { ssh: string; link: AgentVmLink } {
  const found = machines.find((m) => m.name === vmName);
  if (!found)
    throw new OperationError(
      `vCenter host ${host} has no VM ${vmName}; it has ${some(machines.map((m) => m.name)) || 'none'} (\`osr discover --host ${host}\`)`,
      'not-found',
    );
  if (found.state !== 'poweredOn')
    throw new OperationError(
      `${vmName} on ${host} is ${found.state}: power it on (the agent is pushed into the running guest), then install again`,
      'invalid',
    );
  const guestIp = found.details?.guestIp ?? found.ipAddresses?.[0];
  if (!ssh && !guestIp)
    throw new OperationError(
      `VMware Tools reports no IP for ${vmName}: give --ssh root@<address>`,
      'invalid',
    );
  const target = ssh ?? `root@${guestIp?.includes(':') ? `[${guestIp}]` : guestIp}`;
  const address = parseSshTarget(target).host;
  const moref = found.details?.vmId ?? '';
  const instanceUuid = found.details?.instanceUuid;
  return {
    ssh: target,
    link: { host, vm: vmName, moref, ...(instanceUuid ? { instanceUuid } : {}), address },
  };
}

/** Looks the VM up through its vCenter host's discovery (nothing is recorded). */
export async function resolveVm(
  ctx: ControlContext,
  spec: string,
  ssh?: string,
): Promise<{ ssh: string; link: AgentVmLink }> {
  const { host: hostName, vm } = parseVmSpec(spec);
  const host = await getHost(ctx, hostName);
  if (host.kind !== 'vcenter')
    throw new OperationError(
      `host ${host.name} is a ${host.kind} host, not a vCenter: --vm names a VMware VM (use --ssh for any other machine)`,
      'invalid',
    );
  const result = await discoverOn(ctx, host);
  if (!result.ok) throw discoveryRefusal(result);
  return vmInstallTarget(host.name, result.machines, vm, ssh);
}

/** Writes the VM link into the enrolled agent's record (kept by its later connection updates). */
export async function linkAgentToVm(ctx: ControlContext, agentId: string, link: AgentVmLink): Promise<void> {
  await ctx.vault.update<AgentRecord>(agentDoc(agentId), (current) => {
    if (!current)
      throw new OperationError(`agent ${agentId} was uninstalled while it was linked`, 'conflict');
    return { ...current, vm: link };
  });
}
