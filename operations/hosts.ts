// The host registry in the vault: added once by the operator, read by protect (a machine on a
// host), discovery and the process servers started for a host. Checking that a host answers is
// the job of its kind's connector (run on the host's process server), not of this file.
import { checkName } from '../shared/names';
import { HOSTS_PREFIX, hostDoc, type HostConnection, type HostRecord } from '../shared/host-types';
import { VaultConflictError } from '../lib/azure/vault';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';

export async function listHosts(ctx: ControlContext): Promise<HostRecord[]> {
  return ctx.vault.list<HostRecord>(HOSTS_PREFIX);
}

/** The named host, or an error that lists the known ones and says how to add it. */
export async function getHost(ctx: ControlContext, name: string): Promise<HostRecord> {
  checkName('host', name);
  const host = (await ctx.vault.read<HostRecord>(hostDoc(name)))?.value;
  if (host) return host;
  const known = (await listHosts(ctx)).map((h) => h.name);
  throw new OperationError(
    `no host named ${name}${known.length ? `; known hosts: ${known.join(', ')}` : ''}. Add it with \`osr host add ${name} --libvirt <uri>\``,
    'not-found',
  );
}

/** Stores a host record (create only); the caller has checked that it answers. */
export const storeHost = audited(
  'host.add',
  async (ctx: ControlContext, input: { name: string; site: string; connection: HostConnection }) => {
    checkName('host', input.name);
    const record: HostRecord = {
      ...input.connection,
      name: input.name,
      site: input.site,
      createdAt: new Date().toISOString(),
    };
    try {
      await ctx.vault.write(hostDoc(input.name), record);
    } catch (err) {
      if (err instanceof VaultConflictError) {
        throw new OperationError(
          `host ${input.name} already exists; remove it first (\`osr host remove ${input.name}\`) or choose another name`,
          'conflict',
        );
      }
      throw err;
    }
    return record;
  },
  (_ctx, input) => ({ target: input.name, details: { ...input.connection } }),
);
